"""The errors a provider script reports to its caller as one line on stderr."""

# Exit codes: scripts and Ganeti only look at zero versus non-zero, but a
# distinct code for bad input lets an operator's shell tell the two apart.
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class ProviderError(Exception):
    """An operation failed for a reason the operator can act on."""

    exit_code = EXIT_FAILURE

    def __init__(self, message, output=()):
        super().__init__(message)
        self.output = list(output)  # results still worth printing on stdout


class BadInput(ProviderError):
    """The environment or configuration is invalid; nothing was touched."""

    exit_code = EXIT_BAD_INPUT


class TransientError(ProviderError):
    """A failure that may go away by itself (e.g. bricks restarting)."""
