"""Local Stripe and GoCardless sandboxes for tests and the embedded mode."""

from provider_sandboxes.common import Fault, SandboxServer, running
from provider_sandboxes.gocardless import GoCardlessSandbox
from provider_sandboxes.signing import gocardless_signature, stripe_signature
from provider_sandboxes.stripe import StripeSandbox

__all__ = ["Fault", "GoCardlessSandbox", "SandboxServer", "StripeSandbox", "gocardless_signature", "running", "stripe_signature"]
