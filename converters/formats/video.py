"""Reading video files (MP4, and whatever else FFmpeg opens) for the converters, with PyAV.

Every converter that reads videos opens, probes and decodes them here, so a file that cannot be
opened, has no video stream or stops decoding is reported the same way by all of them
(``video_decode_error``, naming the file and how far decoding got). What a source checks against
(the frame count of its state stream, the times of its rows) stays in its converter.

A source is a path or a binary file object (a member of a tar shard). Frames are decoded one at a
time while the consumer asks for them; the container is closed when decoding ends or the consumer
stops early.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import av

from pipelines.episode_store.errors import EpisodeError, Reason

#: what a broken or truncated file raises from PyAV (and from the file object it reads)
VIDEO_ERRORS = (av.error.FFmpegError, OSError, EOFError, ValueError)

Source = str | os.PathLike | BinaryIO


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header says about its first video stream."""

    codec: str
    width: int
    height: int
    pix_fmt: str | None
    #: average (else guessed) frame rate; None when the container states none
    fps: float | None
    #: the frame count the header declares; 0 when it declares none
    header_frames: int
    #: ``header_frames``, or the packets counted (no decoding) when the header declares none
    frames: int


def open_video(source: Source, where: str) -> tuple[Any, Any]:
    """``(container, its first video stream)``; the caller closes the container."""
    try:
        container = av.open(os.fspath(source) if isinstance(source, (str, os.PathLike)) else source, mode="r")
    except VIDEO_ERRORS as exc:
        raise EpisodeError(Reason.VIDEO_DECODE_ERROR, f"{where}: cannot open video: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise EpisodeError(Reason.VIDEO_DECODE_ERROR, f"{where}: file has no video stream")
    return container, container.streams.video[0]


def probe_video(source: Source, where: str) -> VideoInfo:
    """The header of ``source``, read once when an episode is opened, so an unreadable file fails early."""
    container, stream = open_video(source, where)
    try:
        header = int(stream.frames or 0)
        frames = header or sum(1 for packet in container.demux(stream) if packet.size)
        rate = stream.average_rate or stream.guessed_rate
        ctx = stream.codec_context
        return VideoInfo(ctx.name, int(ctx.width), int(ctx.height), ctx.pix_fmt, float(rate) if rate else None,
                         header, frames)
    except VIDEO_ERRORS as exc:
        raise EpisodeError(Reason.VIDEO_DECODE_ERROR, f"{where}: cannot open video: {exc}") from exc
    finally:
        container.close()


def count_frames(source: Source, where: str, *, start: float = 0.0, stop: float | None = None,
                 tol: float = 0.0) -> int:
    """Frames presented in ``[start - tol, stop - tol)`` seconds (the whole file if ``stop`` is None).

    Counted from the container, not decoded: the sample table for a whole file, the
    demuxed packets of the window (after a seek) for a window of a multi-episode file.
    """
    container, stream = open_video(source, where)
    try:
        if stop is None and start <= tol and stream.frames > 0:
            return int(stream.frames)
        tb = stream.time_base
        if start > tol:
            container.seek(int((start - tol) / tb), stream=stream, backward=True, any_frame=False)
        n = 0
        for packet in container.demux(stream):
            if packet.pts is None:
                continue  # the demuxer's flush packet
            t = float(packet.pts * tb)
            dts = float(packet.dts * tb) if packet.dts is not None else t
            if stop is not None and dts >= stop - tol:
                break  # dts <= pts: no later packet can be presented inside the window
            if t >= start - tol and (stop is None or t < stop - tol):
                n += 1
        return n
    except av.error.FFmpegError as exc:
        raise EpisodeError(Reason.VIDEO_DECODE_ERROR, f"{where}: cannot read video packets: {exc}") from exc
    finally:
        container.close()


def decode_frames(source: Source, where: str, *, expected: int | None = None, start: float = 0.0,
                  tol: float = 0.0, threads: int | None = None) -> Iterator[av.VideoFrame]:
    """The frames of ``source`` in presentation order, decoded one at a time.

    With ``start`` past ``tol``, decoding starts at the keyframe before ``start - tol`` (the
    caller skips frames presented earlier). A decoding failure is ``video_decode_error`` naming
    how many frames came out before it. ``expected`` (the frame count the header declares)
    holds the stream to it: ending early is ``video_decode_error``, decoding to more frames
    ``frame_count_mismatch``. ``threads``: decoder threads (1: none; None: FFmpeg's choice).
    """
    container, stream = open_video(source, where)
    try:
        if threads is not None:
            stream.codec_context.thread_count = threads
        if threads != 1:
            stream.codec_context.thread_type = "AUTO"  # frame and slice threads
        if start > tol:
            container.seek(int((start - tol) / stream.time_base), stream=stream, backward=True, any_frame=False)
        frames = container.decode(stream)
        of = f" of {expected}" if expected is not None else ""
        n = 0
        while True:
            try:
                frame = next(frames, None)
            except VIDEO_ERRORS as exc:
                raise EpisodeError(Reason.VIDEO_DECODE_ERROR, f"{where}: decoding failed after {n}{of} frames: {exc}"
                                   ) from exc
            if frame is None:
                break
            n += 1
            if expected is not None and n > expected:
                raise EpisodeError(Reason.FRAME_COUNT_MISMATCH,
                                   f"{where}: decodes to more frames than the {expected} its header declares")
            yield frame
        if expected is not None and n != expected:
            raise EpisodeError(Reason.VIDEO_DECODE_ERROR,
                               f"{where}: stream ended after {n} of its {expected} frames (truncated or corrupt video)")
    finally:
        container.close()

