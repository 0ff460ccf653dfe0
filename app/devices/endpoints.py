from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.auth.dependencies import CurrentPrincipal, StepUpPrincipal
from app.core.errors import NotFound, StepUpRequired, Unauthorized
from app.devices import key_packages, service
from app.devices.key_packages import KeyPackageInvalid, TooManyKeyPackages
from app.devices.schemas import (
    DeviceOut,
    KeyPackageStockOut,
    NewDevice,
    RegisterDevice,
    ResetIdentity,
    UploadKeyPackages,
)
from app.devices.service import DeviceIdTaken, TooManyDevices
from app.keys.service import (
    BadDeviceSignature,
    IdentityKeyExists,
    IdentityKeyMissing,
    IdentityKeyRequired,
)
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses
from app.web.pagination import PageDep, micros, paged

router = APIRouter(tags=["devices"])


@router.post(
    "/v1/devices",
    status_code=status.HTTP_201_CREATED,
    response_model=DeviceOut,
    responses=responses(
        StepUpRequired,
        Unauthorized,
        TooManyDevices,
        DeviceIdTaken,
        BadDeviceSignature,
        IdentityKeyRequired,
        IdentityKeyExists,
    ),
    summary="Register a device, its end-to-end public key and its signed signing key",
)
async def register(
    body: RegisterDevice, principal: StepUpPrincipal, session: SessionDep, ctx: ContextDep
) -> DeviceOut:
    """Registers one installation of a client app: its public key, its MLS signing key and the
    identity key's signature over the device statement (the account's first device also sends the
    identity key). The device id is chosen by the client.
    """
    device = await service.register(
        session,
        ctx.vault,
        ctx.clock,
        principal.account,
        _new(body),
        identity_key=body.identity_key,
    )
    return service.view(device)


def _new(body: NewDevice) -> service.NewDevice:
    return service.NewDevice(
        id=body.device_id,
        label=body.label,
        public_key=body.public_key,
        signing_key=body.signing_key,
        signature=body.signature,
    )


@router.post(
    "/v1/me/identity/reset",
    status_code=status.HTTP_201_CREATED,
    response_model=DeviceOut,
    responses=responses(
        StepUpRequired, Unauthorized, DeviceIdTaken, BadDeviceSignature, IdentityKeyMissing
    ),
    summary="Replace the account's identity key: every device is revoked, one new device added",
)
async def reset_identity(
    body: ResetIdentity, principal: StepUpPrincipal, session: SessionDep, ctx: ContextDep
) -> DeviceOut:
    """For a lost or compromised identity key: every active device of the account is revoked (their
    sockets close with 4003) and the new device, signed by the new identity key, becomes the
    account's one device. Contacts see the key change in the key log.
    """
    device = await service.reset_identity(
        session, ctx.vault, ctx.clock, principal.account, body.identity_key, _new(body.device)
    )
    return service.view(device)


@router.get(
    "/v1/devices",
    response_model=list[DeviceOut],
    responses=paged(responses(Unauthorized)),
    summary="The caller's active devices, oldest first",
    description="Revoked devices are left out; paginated.",
)
async def list_devices(
    principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep, page: PageDep
) -> list[DeviceOut]:
    devices = page.take(
        await service.list_active(session, ctx.vault, principal.account),
        lambda device: (micros(device.created_at), device.id),
        ("devices", principal.id),
    )
    return [service.view(device) for device in devices]


@router.delete(
    "/v1/devices/{device_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(StepUpRequired, Unauthorized, NotFound),
    summary="Revoke one of the caller's devices",
)
async def revoke(
    device_id: str, principal: StepUpPrincipal, session: SessionDep, ctx: ContextDep
) -> None:
    """The device's live sockets close with 4003, its KeyPackages are deleted and the key log
    records the revocation.
    """
    await service.revoke(session, ctx.vault, ctx.clock, principal.account, device_id)
    await key_packages.remove_all(session, ctx.vault, device_id)


def _stock_out(stock: key_packages.Stock) -> KeyPackageStockOut:
    return KeyPackageStockOut(count=stock.count, last_resort=stock.last_resort)


@router.post(
    "/v1/devices/{device_id}/key-packages",
    response_model=KeyPackageStockOut,
    responses=responses(Unauthorized, NotFound, KeyPackageInvalid, TooManyKeyPackages),
    summary="Upload MLS KeyPackages (and a last-resort one) of one of the caller's devices",
)
async def upload_key_packages(
    device_id: str,
    body: UploadKeyPackages,
    principal: CurrentPrincipal,
    session: SessionDep,
    ctx: ContextDep,
) -> KeyPackageStockOut:
    """Adds KeyPackages (cipher suite 2, at most 8192 bytes each) to the device's stock and may
    replace its last-resort one. The upload is checked whole before anything is stored.
    """
    stock = await key_packages.upload(
        session, ctx.vault, principal.account, device_id, body.key_packages, body.last_resort
    )
    return _stock_out(stock)


@router.get(
    "/v1/devices/{device_id}/key-packages",
    response_model=KeyPackageStockOut,
    responses=responses(Unauthorized, NotFound),
    summary="How many MLS KeyPackages one of the caller's devices has left",
)
async def key_package_stock(
    device_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> KeyPackageStockOut:
    """The number of KeyPackages the device still has on the server, and whether it has a
    last-resort one.
    """
    return _stock_out(await key_packages.stock(session, ctx.vault, principal.account, device_id))
