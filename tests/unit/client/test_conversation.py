from mercato.client.conversation import Conversation, estimate_tokens


def test_short_conversations_are_kept_whole() -> None:
    conv = Conversation(context_tokens=2048, reply_tokens=256, system="Be brief.")
    conv.ask("hello")
    conv.answer("hi!")
    sent = conv.ask("how are you?")
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert conv.pruned == 0


def test_oldest_turns_go_first_and_the_system_prompt_and_new_question_stay() -> None:
    conv = Conversation(context_tokens=200, reply_tokens=50, system="S")
    for i in range(10):
        conv.ask(f"question {i} " + "x" * 90)
        conv.answer(f"answer {i} " + "y" * 90)
    sent = conv.ask("last question")
    assert sent[0] == {"role": "system", "content": "S"}
    assert sent[-1] == {"role": "user", "content": "last question"}
    assert sent[1]["role"] == "user"  # turns are dropped in pairs
    assert conv.tokens() <= 150 and conv.pruned > 0
    assert "question 9" in sent[1]["content"] or len(sent) == 2


def test_a_huge_question_is_still_sent() -> None:
    conv = Conversation(context_tokens=100, reply_tokens=50)
    sent = conv.ask("z" * 10_000)
    assert len(sent) == 1


def test_the_servers_count_tightens_the_estimate() -> None:
    conv = Conversation(context_tokens=1000, reply_tokens=100)
    sent = conv.ask("a" * 300)
    conv.observe(sent, prompt_tokens=estimate_tokens(sent) * 3)
    assert conv.scale == 3.0
    conv.answer("b" * 300)
    conv.ask("c" * 300)
    assert conv.tokens() <= 900
