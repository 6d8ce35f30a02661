"""The signaling server: the switchboard (pure: auth, sessions, calls, resume, over a
store of presence and call records), its rate limits and TURN credentials, and the
websockets driver that feeds it.

Imports `omnicli.wire` only; never the phone, the media stack or the UI.
"""
