"""Exception classes of the codec: every bad input ends in a CodecError subclass."""


class CodecError(ValueError):
    """Base class of every error the codec raises on bad input or bad settings."""


class SettingsError(CodecError):
    """A codec setting is out of range or inconsistent with the others."""


class InvalidTensorError(CodecError):
    """A tensor given to the encoder cannot be coded (NaN/Inf, non-numeric dtype, bad shape)."""


class FormatError(CodecError):
    """The bytes are not a fedbench codec stream (wrong magic, unknown version or mode)."""


class CorruptStreamError(CodecError):
    """The bitstream is damaged: checksum mismatch, inconsistent lengths, bad termination."""


class TruncatedStreamError(CorruptStreamError):
    """The bitstream ends before everything it announces was read."""
