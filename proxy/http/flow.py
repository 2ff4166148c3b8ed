"""Flow-control numbers shared by the client and upstream sides.

Every connection's transport pauses the peer's reading above WRITE_HIGH bytes
queued and resumes it below WRITE_LOW, so Turnout holds at most about
WRITE_HIGH plus one read (uvloop reads up to 256 KiB) per direction,
whatever the speed difference between client and backend.
"""

WRITE_HIGH = 64 * 1024
WRITE_LOW = 16 * 1024
# Joining small pieces into one write saves a syscall each (+18-22 % requests/s
# on small responses, PERF-NOTES); past this size the copy costs more than it saves.
JOIN_LIMIT = 32 * 1024
