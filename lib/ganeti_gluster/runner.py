"""Running external tools: argument lists only, a fixed PATH, a bound on time."""

from . import diag
from .errors import ProviderError

SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
TOOL_ENV = {"PATH": SAFE_PATH, "LC_ALL": "C"}


class CommandFailed(ProviderError):
    def __init__(self, args, returncode, stderr):
        self.args_run = list(args)
        self.returncode = returncode
        self.stderr = stderr
        lines = [line for line in (stderr or "").splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else f"exit code {returncode}"
        super().__init__(f"{args[0]} failed: {detail}")


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class Runner:
    """Runs a command and returns its output; tests substitute a fake."""

    def run(self, args, timeout, check=True):
        import subprocess  # only now: warm attach runs no command at all

        diag.debug("run: " + " ".join(args))
        try:
            done = subprocess.run(
                list(args), env=TOOL_ENV, stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ProviderError(
                f"{args[0]} did not finish within {timeout:g} s") from None
        except FileNotFoundError:
            raise ProviderError(f"{args[0]} is not installed") from None
        result = Result(done.returncode, done.stdout, done.stderr)
        if done.stderr:
            diag.debug(f"{args[0]} stderr: {done.stderr.strip()}")
        if check and done.returncode != 0:
            raise CommandFailed(args, done.returncode, done.stderr)
        return result
