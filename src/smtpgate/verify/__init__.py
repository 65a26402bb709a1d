"""Who really sent it: SPF, DKIM, DMARC and ARC checked on arrival, DNS blocklists, and an
RFC 8601 ``Authentication-Results`` header (see ``docs/verify.md``).

Needs the ``verify`` extra (dnspython, dkimpy, publicsuffixlist)::

    pip install 'smtpgate[verify]'
"""

from .arc import ARCResult
from .dkim import DKIMResult
from .dmarc import DMARCResult
from .dnsbl import DNSBL, Blocklist, DNSBLResult, Listing
from .policy import AuthGate, Policy
from .resolver import DNSTempError, Resolver
from .results import AuthResults
from .sign import sign
from .spf import SPFCheck, SPFResult, check_host, check_spf
from .verifier import Verifier, VerifyOptions

__all__ = [
    "AuthGate",
    "Policy",
    "Verifier",
    "VerifyOptions",
    "Resolver",
    "DNSTempError",
    "AuthResults",
    "SPFResult",
    "SPFCheck",
    "DKIMResult",
    "DMARCResult",
    "ARCResult",
    "DNSBL",
    "Blocklist",
    "DNSBLResult",
    "Listing",
    "check_spf",
    "check_host",
    "sign",
]
