"""A chat kept on the client: messages, and pruning of the oldest turns when the
conversation would no longer fit the model's context. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

CHARS_PER_TOKEN = 3  # conservative for English with small-model tokenizers
TOKENS_PER_MESSAGE = 8  # role markers of the chat template


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    return sum(
        len(m.get("content") or "") // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE for m in messages
    )


@dataclass
class Conversation:
    context_tokens: int = 2048
    reply_tokens: int = 256  # room kept for the answer
    system: str | None = None
    turns: list[dict[str, str]] = field(default_factory=list)
    pruned: int = 0  # messages dropped so far
    scale: float = 1.0  # the server's prompt tokens per estimated token, once observed

    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns

    def tokens(self) -> int:
        return int(estimate_tokens(self.messages()) * self.scale) + 1

    def ask(self, text: str) -> list[dict[str, str]]:
        """Add the user's message, prune what no longer fits, return what to send."""
        self.turns.append({"role": "user", "content": text})
        self.prune()
        return self.messages()

    def answer(self, text: str) -> None:
        self.turns.append({"role": "assistant", "content": text})

    def observe(self, sent: list[dict[str, str]], prompt_tokens: int) -> None:
        """Calibrate the estimate with the server's count of the prompt just sent."""
        estimate = estimate_tokens(sent)
        if estimate > 0 and prompt_tokens > 0:
            self.scale = max(self.scale, prompt_tokens / estimate)

    def forget_last_question(self) -> None:
        if self.turns and self.turns[-1]["role"] == "user":
            self.turns.pop()

    def prune(self) -> int:
        """Drop the oldest turns (a user message and its answer) until prompt and reply
        fit the context; the newest user message is always kept. Messages dropped."""
        budget = self.context_tokens - self.reply_tokens
        dropped = 0
        while len(self.turns) > 1 and self.tokens() > budget:
            self.turns.pop(0)
            dropped += 1
            if len(self.turns) > 1 and self.turns[0]["role"] == "assistant":
                self.turns.pop(0)
                dropped += 1
        self.pruned += dropped
        return dropped

    def reset(self) -> None:
        self.turns.clear()
