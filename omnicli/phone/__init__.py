"""The call-core: `Phone`, the SDK-like object the CLI and the REPL both drive.

Pure parts: `callstate` (the call state machine), `reconcile`, `events`, `figures`,
`summary`, `endings`. The async driver `core.Phone` runs them with the signaling client
(`signaling`), reconnection (`resume`), and each call's tasks and media (`callrun`,
`callmedia`). Imports `omnicli.wire` and `omnicli.media`; never the server or the UI.
"""
