import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from radcommon.contracts import RoleValues
from signature.adapters.keys import open_private_key
from signature.adapters.secret_box import SecretBox
from signature.adapters.tables import SigningKeyRow
from signature.service_layer import commands
from signature.service_layer.unit_of_work import SignatureUnitOfWork


async def keys(desk: Any) -> list[dict[str, Any]]:
    response = await desk.client.get("/signatures/keys")  # no token: the key ring is public
    assert response.status == 200
    return (await response.json())["keys"]  # type: ignore[no-any-return]


async def test_rotation_keeps_old_signatures_valid_and_new_ones_name_the_new_key(desk: Any) -> None:
    reader = await desk.person()
    operator = await desk.person(roles=(RoleValues.OPERATOR,))
    before = await desk.signed(reader, await desk.submit())

    response = await desk.client.post("/signatures/keys/rotate", headers=operator.headers())
    assert response.status == 201
    new_key = await response.json()
    after = await desk.signed(reader, await desk.submit())

    assert new_key["kid"] != before["key_id"]
    assert after["key_id"] == new_key["kid"]
    assert (await desk.verify(before["signature_id"], reader))["valid"] is True
    assert (await desk.verify(after["signature_id"], reader))["valid"] is True
    ring = {key["kid"]: key for key in await keys(desk)}
    assert ring[before["key_id"]]["status"] == "retired" and ring[before["key_id"]]["retired_at"]
    assert ring[new_key["kid"]]["status"] == "signing"
    assert ring[new_key["kid"]]["jwk"]["kty"] == "OKP"


@pytest.mark.parametrize(("role", "status"), [(RoleValues.ADMIN, 201), (RoleValues.OPERATOR, 201),
                                              (RoleValues.RADIOLOGIST, 403), (RoleValues.MANAGER, 403)])
async def test_who_may_rotate(desk: Any, role: RoleValues, status: int) -> None:
    someone = await desk.person(roles=(role,))
    assert (await desk.client.post("/signatures/keys/rotate", headers=someone.headers())).status == status


async def test_a_revoked_key_stops_signing_and_its_signatures_say_so(desk: Any) -> None:
    reader = await desk.person()
    operator = await desk.person(roles=(RoleValues.OPERATOR,))
    signed = await desk.signed(reader, await desk.submit())

    response = await desk.client.post(f"/signatures/keys/{signed['key_id']}/revoke", headers=operator.headers(),
                                      json={"reason": "private key exposed in a backup"})
    assert response.status == 200
    revoked = await response.json()

    verdict = await desk.verify(signed["signature_id"], reader)
    assert verdict["valid"] is False
    [problem] = verdict["problems"]
    assert problem["code"] == "key_revoked"
    assert problem["revoked_at"] == revoked["revoked_at"]
    assert "private key exposed" in problem["detail"]
    later = await desk.signed(reader, await desk.submit())
    assert later["key_id"] != signed["key_id"]
    assert (await desk.verify(later["signature_id"], reader))["valid"] is True
    assert {k["kid"]: k["status"] for k in await keys(desk)}[signed["key_id"]] == "revoked"
    again = await desk.client.post(f"/signatures/keys/{signed['key_id']}/revoke", headers=operator.headers(),
                                   json={"reason": "twice"})
    assert again.status == 409


async def test_only_an_operator_revokes_and_only_known_keys(desk: Any) -> None:
    admin = await desk.person(roles=(RoleValues.ADMIN,))
    operator = await desk.person(roles=(RoleValues.OPERATOR,))
    [key] = await keys(desk)
    path = f"/signatures/keys/{key['kid']}/revoke"
    assert (await desk.client.post(path, headers=admin.headers(), json={"reason": "x"})).status == 403
    assert (await desk.client.post("/signatures/keys/nosuchkey/revoke", headers=operator.headers(),
                                   json={"reason": "x"})).status == 404
    assert (await desk.client.post(path, headers=operator.headers(), json={"reason": ""})).status == 422


async def test_the_schedule_rotates_only_when_due(desk: Any) -> None:
    uow = lambda: SignatureUnitOfWork(desk.db)  # noqa: E731
    now = datetime.now(UTC)
    assert await commands.rotate_if_due(uow(), desk.keyring, now + timedelta(days=89)) is False
    assert await commands.rotate_if_due(uow(), desk.keyring, now + timedelta(days=91)) is True
    assert await commands.rotate_if_due(uow(), desk.keyring, now + timedelta(days=92)) is False
    assert [k["status"] for k in await keys(desk)] == ["retired", "signing"]


async def test_private_keys_are_sealed_at_rest(desk: Any) -> None:
    async with desk.db.session() as session:
        [row] = (await session.execute(sa.select(SigningKeyRow))).scalars().all()
    private = open_private_key(row, desk.keyring.box)
    raw = private.private_bytes_raw()
    assert raw not in base64.urlsafe_b64decode(row.private_key_sealed)
    with pytest.raises(ValueError, match="altered"):
        open_private_key(row, SecretBox(SecretBox.generate_key()))
    with pytest.raises(ValueError, match="altered"):
        desk.keyring.box.open(row.private_key_sealed, bound_to="another-kid")


def test_a_secret_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SecretBox(b"short")
