"""The plan: pure functions from a timeline to ffmpeg argument lists. No I/O here.

Video and audio are made apart and joined by one copying pass:
  video  = the sources as they are (fast path) or normalised segments
  audio  = one mix pass to float WAV -> loudness measured -> normalised, AAC-encoded
  output = the video pieces copy-concatenated beside the audio, ``+faststart``

Where each concern lives:
  command       ``Command`` (one ffmpeg run), the sample clock, how inputs are opened
  video         encoder settings, the copy check, the picture filters, the concat list
  pieces        segments cut into pieces, and the command that normalises one
  schedule      the cost model: cutting or not, encodes at once, memory per encoder
  audio_mix     the mix of clips and the segments' own sound to a float WAV
  loudness      EBU R128 scans and the gain/limiter to the loudness target
  audio_encode  the AAC encode, whole or in chunks joined frame by frame
  output        the final copying mux into the MP4

The names callers use are re-exported here (``plan.EncodeSettings``); helpers shared
only inside the package are imported from their module.
"""

from scenerender.core.plan.audio_encode import (
    AAC_ENCODER,
    AUDIO_BITRATE,
    AUDIO_CHUNK_MIN_S,
    AUDIO_FIRST_CHUNK_WEIGHT,
    AUDIO_JOIN_SEARCH_FRAMES,
    AUDIO_LEAD_IN_FRAMES,
    AUDIO_TAIL_FRAMES,
    AudioChunk,
    audio_chunk_command,
    audio_chunks,
    audio_encode_command,
)
from scenerender.core.plan.audio_mix import (
    DUCK_STEP_SAMPLES,
    END_FADE_S,
    Mix,
    audio_mix_command,
    mix_scan_command,
    plan_mix,
    seek_step,
    sound_seek,
)
from scenerender.core.plan.command import SAMPLE_RATE, Command, total_samples, track_pads, track_timescale
from scenerender.core.plan.loudness import (
    AAC_PRIMING_SAMPLES,
    EBUR128_SCAN,
    LEVEL_CORRECTIONS,
    LOUDNESS_TOLERANCE_LU,
    NO_CORRECTION,
    PEAK_STEP_DB,
    TRUE_PEAK_MARGIN_DB,
    LevelCorrection,
    LoudnessScan,
    MixGain,
    encoded_scan_command,
    loudness_scan_command,
    mix_gain,
    next_correction,
    parse_ebur128,
)
from scenerender.core.plan.output import assemble_command
from scenerender.core.plan.pieces import (
    PIECE_MAX_GOPS,
    PIECE_SEEK_MARGIN_FRAMES,
    Piece,
    normalize_command,
    piece_limit,
    segment_pieces,
)
from scenerender.core.plan.schedule import (
    AUDIO_S_PER_SCENE_S,
    DECODE_S_PER_MEGAPIXEL_FRAME,
    DETAIL_BPP,
    ENCODE_S_PER_MEGAPIXEL_FRAME,
    ENCODER_BASE_MB,
    ENCODER_FRAMES,
    ENCODER_FRAMES_PER_EXTRA_THREAD,
    FRAME_THREAD_LOSS,
    MEMORY_HEADROOM,
    PIECE_OVERHEAD,
    audio_cost,
    encode_cost,
    encoder_mb,
    estimated_wall,
    parallel_jobs,
    piece_cost,
    plan_pieces,
)
from scenerender.core.plan.video import (
    BT709_TAGS,
    COPY_FORMATS,
    EncodeSettings,
    VideoPart,
    concat_list,
    copy_blockers,
    subtitles_filter,
)

__all__ = [
    "AAC_ENCODER",
    "AAC_PRIMING_SAMPLES",
    "AUDIO_BITRATE",
    "AUDIO_CHUNK_MIN_S",
    "AUDIO_FIRST_CHUNK_WEIGHT",
    "AUDIO_JOIN_SEARCH_FRAMES",
    "AUDIO_LEAD_IN_FRAMES",
    "AUDIO_S_PER_SCENE_S",
    "AUDIO_TAIL_FRAMES",
    "BT709_TAGS",
    "COPY_FORMATS",
    "DECODE_S_PER_MEGAPIXEL_FRAME",
    "DETAIL_BPP",
    "DUCK_STEP_SAMPLES",
    "EBUR128_SCAN",
    "ENCODER_BASE_MB",
    "ENCODER_FRAMES",
    "ENCODER_FRAMES_PER_EXTRA_THREAD",
    "ENCODE_S_PER_MEGAPIXEL_FRAME",
    "END_FADE_S",
    "FRAME_THREAD_LOSS",
    "LEVEL_CORRECTIONS",
    "LOUDNESS_TOLERANCE_LU",
    "MEMORY_HEADROOM",
    "NO_CORRECTION",
    "PEAK_STEP_DB",
    "PIECE_MAX_GOPS",
    "PIECE_OVERHEAD",
    "PIECE_SEEK_MARGIN_FRAMES",
    "SAMPLE_RATE",
    "TRUE_PEAK_MARGIN_DB",
    "AudioChunk",
    "Command",
    "EncodeSettings",
    "LevelCorrection",
    "LoudnessScan",
    "Mix",
    "MixGain",
    "Piece",
    "VideoPart",
    "assemble_command",
    "audio_chunk_command",
    "audio_chunks",
    "audio_cost",
    "audio_encode_command",
    "audio_mix_command",
    "concat_list",
    "copy_blockers",
    "encode_cost",
    "encoded_scan_command",
    "encoder_mb",
    "estimated_wall",
    "loudness_scan_command",
    "mix_gain",
    "mix_scan_command",
    "next_correction",
    "normalize_command",
    "parallel_jobs",
    "parse_ebur128",
    "piece_cost",
    "piece_limit",
    "plan_mix",
    "plan_pieces",
    "seek_step",
    "segment_pieces",
    "sound_seek",
    "subtitles_filter",
    "total_samples",
    "track_pads",
    "track_timescale",
]
