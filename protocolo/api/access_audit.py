"""The access audit: an ``AccessRecorded`` event for every read of personal data.

Published BEFORE the data is returned: if the ledger does not take the record, the
caller gets 503 and no data (an access that cannot be audited does not happen). Not
awaited until projected: the reader does not need to see its own audit row.
"""

from __future__ import annotations

import uuid

from fastapi import Request

from .auth import client_address
from .identities import Principal
from .services import ApiServices

#: AccessRecorded.action symbols the API produces.
UNMASK = "UNMASK"
RECORDING_PLAYBACK = "RECORDING_PLAYBACK"
RECORDING_DOWNLOAD = "RECORDING_DOWNLOAD"
BUNDLE_DOWNLOAD = "BUNDLE_DOWNLOAD"
SEARCH_BY_CPF = "SEARCH_BY_CPF"
SEARCH_BY_CUSTOMER_CODE = "SEARCH_BY_CUSTOMER_CODE"
#: A contact shown while its views differ from the signed log (the verified values were
#: shown; ``target`` names what differed).
VERIFIED_READ_MISMATCH = "VERIFIED_READ_MISMATCH"


def record_access(svc: ApiServices, request: Request, who: Principal, action: str, *, purpose: str,
                  protocol_number: str | None = None, subject_ref: str | None = None,
                  target: str | None = None) -> str:
    access_id = str(uuid.uuid4())
    svc.publisher.publish("AccessRecorded", {
        "access_id": access_id, "actor": who.user_name, "role": who.role.value.upper(),
        "action": action, "subject_ref": subject_ref, "target": target, "purpose": purpose,
        "source_address": client_address(request),
    }, protocol_number=protocol_number)
    return access_id
