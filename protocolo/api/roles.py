"""Roles and what each may do.

A route asks for *permissions* (OAuth2-style scopes: ``contacts:read``), all of them
unless it says "any of" (``auth.principal_any_of``); a role is a fixed set of permissions,
in ``ROLE_PERMISSIONS``, the one table (docs/api.md's role table is tested against it). Users carry a role today; an OIDC deployment later maps a
token's role claim to the same names, so routes never change.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ANALYST = "analyst"
    SUPERVISOR = "supervisor"
    COMPLIANCE = "compliance"
    REGULATOR = "regulator"
    SERVICE = "service"
    CUSTOMER = "customer"


class Permission(StrEnum):
    CONTACTS_READ = "contacts:read"            # search, timelines (personal data masked)
    PERSONAL_DATA_UNMASK = "personal-data:unmask"
    RECORDINGS_ACCESS = "recordings:access"    # a recording's media reference (audited)
    REQUESTS_READ = "requests:read"            # the whole queue
    REQUESTS_WRITE = "requests:write"          # create, locate, fulfil, reject
    REQUESTS_OWN = "requests:own"              # a customer's own requests
    HOLDS_WRITE = "holds:write"
    APPROVALS_REQUEST = "approvals:request"
    APPROVALS_DECIDE = "approvals:decide"
    APPROVALS_READ = "approvals:read"
    ACCESS_LOG_READ = "access-log:read"        # anyone's access log (reports)
    ACCESS_LOG_OWN = "access-log:own"          # a customer's own
    EVENTS_PUBLISH = "events:publish"
    PROOF_OWN = "proof:own"                    # a customer's own bundle of every contact (LGPD)


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ANALYST: frozenset({P.CONTACTS_READ, P.RECORDINGS_ACCESS, P.REQUESTS_READ, P.REQUESTS_WRITE}),
    Role.SUPERVISOR: frozenset({P.CONTACTS_READ, P.PERSONAL_DATA_UNMASK, P.RECORDINGS_ACCESS,
                                P.REQUESTS_READ, P.REQUESTS_WRITE, P.HOLDS_WRITE, P.APPROVALS_REQUEST,
                                P.APPROVALS_READ}),
    # Compliance judges rules (retention, holds, approvals) on digests and timelines; it does
    # not hand recordings over, so it never reaches their media (least privilege, DOMAIN.md).
    Role.COMPLIANCE: frozenset({P.CONTACTS_READ, P.PERSONAL_DATA_UNMASK,
                                P.REQUESTS_READ, P.HOLDS_WRITE, P.APPROVALS_REQUEST, P.APPROVALS_DECIDE,
                                P.APPROVALS_READ, P.ACCESS_LOG_READ}),
    Role.REGULATOR: frozenset({P.REQUESTS_READ, P.ACCESS_LOG_READ}),
    Role.SERVICE: frozenset({P.EVENTS_PUBLISH}),
    Role.CUSTOMER: frozenset({P.REQUESTS_OWN, P.ACCESS_LOG_OWN, P.PROOF_OWN}),
}


def allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]
