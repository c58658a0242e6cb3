"""Video jobs of the media worker: ffprobe and ffmpeg run as limited children (docs/video.md)."""
