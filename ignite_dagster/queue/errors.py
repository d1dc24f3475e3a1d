"""Queue errors shared by the client, the lease keeper and the staged worker."""

from __future__ import annotations


class LostClaim(RuntimeError):
    """This worker no longer holds the job's claim; it must stop without writing results."""

    reason_code = "lost_claim"
