"""Every SQLAlchemy model, imported here so that metadata is complete."""

from app.models.account import Account, AccountStatus, Role
from app.models.audit import AuditEntry
from app.models.auth_factor import AuthFactor
from app.models.base import Base
from app.models.consent import ConsentAcceptance, ConsentDocument, ConsentKind
from app.models.data_key import DataKey, DataKeyRows
from app.models.device import MAX_PUBLIC_KEY_BYTES, Device
from app.models.disclosure import Disclosure, DisclosureBasis
from app.models.guardian import GuardianLink, MinorProfile, WardLink
from app.models.idempotency import IdempotencyKey
from app.models.incident import Incident, IncidentStatus, Severity
from app.models.key_log import KeyLogEntry
from app.models.key_package import KeyPackage, KeyPackageClaim, RoomGroupInfo
from app.models.notice import Notice, NoticeKind
from app.models.password_reset import PasswordReset
from app.models.refresh_token import LoginFamily, RefreshToken
from app.models.rights_request import RightsRequest
from app.models.room import (
    AccountRoom,
    CareRelationship,
    Room,
    RoomInvitation,
    RoomKind,
    RoomMember,
)
from app.models.safety import Licensure, SafetyCheckin, SafetyCheckinMode
from app.models.webhook import DeliveryState, WebhookDelivery, WebhookEndpoint

__all__ = [
    "MAX_PUBLIC_KEY_BYTES",
    "Account",
    "AccountRoom",
    "AccountStatus",
    "AuditEntry",
    "AuthFactor",
    "Base",
    "CareRelationship",
    "ConsentAcceptance",
    "ConsentDocument",
    "ConsentKind",
    "DataKey",
    "DataKeyRows",
    "DeliveryState",
    "Device",
    "Disclosure",
    "DisclosureBasis",
    "GuardianLink",
    "IdempotencyKey",
    "Incident",
    "IncidentStatus",
    "KeyLogEntry",
    "KeyPackage",
    "KeyPackageClaim",
    "Licensure",
    "LoginFamily",
    "MinorProfile",
    "Notice",
    "NoticeKind",
    "PasswordReset",
    "RefreshToken",
    "RightsRequest",
    "Role",
    "Room",
    "RoomGroupInfo",
    "RoomInvitation",
    "RoomKind",
    "RoomMember",
    "SafetyCheckin",
    "SafetyCheckinMode",
    "Severity",
    "WardLink",
    "WebhookDelivery",
    "WebhookEndpoint",
]
