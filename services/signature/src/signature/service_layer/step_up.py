"""The step-up token: the signer's fresh re-authentication for this one signing (21 CFR 11.200(a)).

identity issues it (``POST /api/auth/step-up``, password and TOTP again) for the audience
``telerad-step-up`` with the purpose ``sign``; it must name the same user and organisation as the
access token, be unexpired, and is spent by the first signing attempt that presents it.
"""

from __future__ import annotations

from radcommon.auth import STEP_UP_AUDIENCE, Principal, TokenError, TokenVerifier
from signature.domain.model import StepUpRefused

STEP_UP_HEADER = "X-Step-Up-Token"
STEP_UP_PURPOSE = "sign"
_MAX_TOKEN_ID = 255

_SENTENCES = {
    "expired": "The step-up token expired: re-authenticate and sign again.",
    "bad_type": "This is not a step-up token (an access token cannot stand in for one).",
    "bad_audience": "This is not a step-up token (an access token cannot stand in for one).",
    "wrong_purpose": "The step-up token was not issued for signing.",
    "revoked": "The session of the step-up token has ended.",
}


async def verified_step_up(verifier: TokenVerifier, token: str | None, signer: Principal) -> Principal:
    """The step-up token's principal, when it may authorise ``signer``'s signing; StepUpRefused otherwise."""
    if not token:
        raise StepUpRefused("step_up_missing", f"Signing needs a step-up token in the {STEP_UP_HEADER} header.")
    try:
        step_up = await verifier.verify(token, audience=STEP_UP_AUDIENCE, purpose=STEP_UP_PURPOSE)
    except TokenError as error:
        raise StepUpRefused(f"step_up_{error.reason}", _SENTENCES.get(
            error.reason, f"The step-up token is not valid ({error.reason}).")) from None
    if step_up.user_id != signer.user_id:
        raise StepUpRefused("step_up_other_user", "The step-up token belongs to another user.", forbidden=True)
    if step_up.organization_id != signer.organization_id:
        raise StepUpRefused("step_up_other_organization",
                            "The step-up token was issued in another organisation.", forbidden=True)
    if len(step_up.token_id) > _MAX_TOKEN_ID:
        raise StepUpRefused("step_up_bad_claims", "The step-up token's id is too long.")
    return step_up
