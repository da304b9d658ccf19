"""Intel TDX DCAP quotes (versions 4 and 5): just enough parsing to find what they bind.

Pure: no I/O, no signature checks. Layout (Intel TDX DCAP Quoting Library API, appendix
"Quote format"), all integers little-endian:

- header, 48 bytes: ``version`` u16, ``att_key_type`` u16 (2 = ECDSA P-256),
  ``tee_type`` u32 (0x81 = TDX), reserved 4, ``qe_vendor_id`` 16, ``user_data`` 20.
- version 4: the TD report body follows at byte 48 (584 bytes, TDX 1.0).
- version 5: a descriptor (``body_type`` u16, ``body_size`` u32) at byte 48, then the
  body at byte 54: type 2 = TDX 1.0 (584 bytes), type 3 = TDX 1.5 (648 bytes).
- TD report body: tee_tcb_svn 16, mr_seam 48, mr_signer_seam 48, seam_attributes 8,
  td_attributes 8, xfam 8, mr_td 48, mr_config_id 48, mr_owner 48, mr_owner_config 48,
  rtmr0..3 4x48, **report_data 64** (body offset 520; quote bytes 568..632 in v4,
  574..638 in v5), then (TDX 1.5 only) tee_tcb_svn2 16 and mr_servicetd 48.
- then ``signature_data_len`` u32 and that many bytes of signature data (ECDSA
  signature, attestation key, QE report and the PCK certificate chain). Agents may
  pad the quote with trailing zeros after it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

HEADER_LEN: Final = 48
TEE_TYPE_TDX: Final = 0x81
TEE_TYPE_SGX: Final = 0x00
TD10_BODY_LEN: Final = 584
TD15_BODY_LEN: Final = 648
_V5_BODY_LEN: Final[dict[int, int]] = {2: TD10_BODY_LEN, 3: TD15_BODY_LEN}
REPORT_DATA_BODY_OFFSET: Final = 520
REPORT_DATA_OFFSET_V4: Final = HEADER_LEN + REPORT_DATA_BODY_OFFSET  # 568
REPORT_DATA_LEN: Final = 64
MIN_QUOTE_LEN_V4: Final = HEADER_LEN + TD10_BODY_LEN + 4  # 636: no signature data


class QuoteFormatError(ValueError):
    """Not a TDX v4/v5 quote, or a truncated one. ``unsupported`` tells the two apart."""

    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


@dataclass(frozen=True, slots=True)
class TdxQuote:
    """The fields of a TDX quote that a binding or measurement check needs."""

    version: int
    att_key_type: int
    tee_type: int
    qe_vendor_id: bytes
    body_type: int  # 2 = TDX 1.0 body, 3 = TDX 1.5 body (v4 quotes are always 2)
    mr_seam: bytes
    mr_td: bytes
    mr_config_id: bytes
    rtmr: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes
    signature_data_len: int

    def to_dict(self) -> dict[str, object]:
        """Hex strings, for printing (``mercato verify``) or JSON."""
        return {
            "version": self.version,
            "att_key_type": self.att_key_type,
            "tee_type": self.tee_type,
            "qe_vendor_id": self.qe_vendor_id.hex(),
            "body_type": self.body_type,
            "mr_seam": self.mr_seam.hex(),
            "mr_td": self.mr_td.hex(),
            "mr_config_id": self.mr_config_id.hex(),
            "rtmr0": self.rtmr[0].hex(),
            "rtmr1": self.rtmr[1].hex(),
            "rtmr2": self.rtmr[2].hex(),
            "rtmr3": self.rtmr[3].hex(),
            "report_data": self.report_data.hex(),
            "signature_data_len": self.signature_data_len,
        }


def _body_location(quote: bytes, version: int) -> tuple[int, int, int]:
    """(body offset, body length, body type) for a v4 or v5 quote."""
    if version == 4:
        return HEADER_LEN, TD10_BODY_LEN, 2
    if len(quote) < HEADER_LEN + 6:
        raise QuoteFormatError(f"quote too short for a v5 body descriptor: {len(quote)} bytes")
    body_type, body_size = struct.unpack_from("<HI", quote, HEADER_LEN)
    want = _V5_BODY_LEN.get(body_type)
    if want is None:
        raise QuoteFormatError(
            f"v5 quote body type {body_type} is not a TD report", unsupported=True
        )
    if body_size != want:
        raise QuoteFormatError(f"v5 body type {body_type} must be {want} bytes, says {body_size}")
    return HEADER_LEN + 6, want, body_type


def parse_tdx_quote(quote: bytes) -> TdxQuote:
    """Parse the header and TD report body; check the lengths add up.

    Raises :class:`QuoteFormatError`. Checks structure only: it does not verify the
    quote's signature or its certificate chain.
    """
    if len(quote) < HEADER_LEN:
        raise QuoteFormatError(f"quote too short for a header: {len(quote)} bytes")
    version, att_key_type, tee_type = struct.unpack_from("<HHI", quote, 0)
    if version not in (4, 5):
        raise QuoteFormatError(f"quote version {version} is not 4 or 5", unsupported=True)
    if tee_type != TEE_TYPE_TDX:
        raise QuoteFormatError(f"tee_type {tee_type:#x} is not TDX (0x81)", unsupported=True)
    start, body_len, body_type = _body_location(quote, version)
    end = start + body_len
    if len(quote) < end + 4:
        raise QuoteFormatError(f"quote truncated: {len(quote)} bytes, body ends at {end}")
    (sig_len,) = struct.unpack_from("<I", quote, end)
    if end + 4 + sig_len > len(quote):
        raise QuoteFormatError(
            f"quote truncated: signature data of {sig_len} bytes runs past {len(quote)}"
        )
    body = quote[start:end]
    rtmr = tuple(body[328 + 48 * i : 376 + 48 * i] for i in range(4))
    return TdxQuote(
        version=version,
        att_key_type=att_key_type,
        tee_type=tee_type,
        qe_vendor_id=quote[12:28],
        body_type=body_type,
        mr_seam=body[16:64],
        mr_td=body[136:184],
        mr_config_id=body[184:232],
        rtmr=(rtmr[0], rtmr[1], rtmr[2], rtmr[3]),
        report_data=body[REPORT_DATA_BODY_OFFSET : REPORT_DATA_BODY_OFFSET + REPORT_DATA_LEN],
        signature_data_len=sig_len,
    )


def extract_report_data(quote: bytes) -> bytes:
    """The 64-byte report_data a TDX v4/v5 quote carries (v4: bytes 568..632)."""
    return parse_tdx_quote(quote).report_data
