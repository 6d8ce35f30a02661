"""Media: the aiortc peer connection and its loss recovery, tracks, sources, devices,
probes and the recorder.

Imports `omnicli.wire` at most; never the server, the phone or the UI. aiortc, av,
cv2 and sounddevice are imported inside the modules that need them, never here.
"""
