"""What a person or a script meets: Typer commands, the one-shot flows, the REPL, Rich
rendering, the status line, OpenCV windows and settings.

The top layer: may import every other one.
"""
