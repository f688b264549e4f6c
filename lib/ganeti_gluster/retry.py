"""Bounded retries (tenacity), with the first try made before tenacity is loaded.

Importing tenacity costs ~85 ms, more than a whole warm attach, and almost
every call succeeds at once: only a failure pays for the import.
"""

import time

from . import diag


def bounded(work, retry_on, seconds, pause, attempts=None, what="the operation"):
    """Calls work() until it succeeds; retries on `retry_on` errors, pausing
    `pause` s between tries, for at most `attempts` tries and `seconds` in all;
    the last error is raised."""
    started = time.monotonic()
    try:
        return work()
    except retry_on as exc:
        if attempts == 1 or seconds <= pause:
            raise
        diag.warn(f"{what} failed (try 1{f' of {attempts}' if attempts else ''}): {exc}; "
                  f"retrying for up to {seconds:g} s")
    time.sleep(pause)
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_fixed

    stop = stop_after_delay(max(0.0, seconds - (time.monotonic() - started)))
    if attempts:
        stop = stop | stop_after_attempt(attempts - 1)
    return Retrying(
        stop=stop, wait=wait_fixed(pause), retry=retry_if_exception_type(retry_on), reraise=True,
        before_sleep=lambda state: diag.warn(
            f"{what} failed (try {state.attempt_number + 1}{f' of {attempts}' if attempts else ''}): "
            f"{state.outcome.exception()}"))(work)
