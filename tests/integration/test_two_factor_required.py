"""An organisation that requires a second factor for a role: its users must enrol before they can work."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import aiohttp
import pyotp

from radcommon.contracts import RoleValues
from support.platform import DEMO_PASSWORD, running_platform


async def test_a_user_without_the_required_second_factor_can_only_enrol(tmp_path: Path) -> None:
    async with running_platform(tmp_path) as platform, aiohttp.ClientSession() as client:
        await platform.services["identity"].create_organization(  # type: ignore[attr-defined]
            organization_id=uuid4(), name="Strict Radiology", slug="strict", password=DEMO_PASSWORD,
            users=[("rad@strict.test", "Rad", [RoleValues.RADIOLOGIST])], require_2fa_roles=[RoleValues.RADIOLOGIST])
        url = platform.gateway_url

        async def login(**extra: str) -> tuple[int, dict[str, object]]:
            async with client.post(f"{url}/api/auth/login", json={"email": "rad@strict.test",
                                                                   "password": DEMO_PASSWORD, **extra}) as response:
                return response.status, await response.json()

        status, tokens = await login()
        assert status == 200 and tokens["two_factor_enrolment_required"] is True
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        async with client.get(f"{url}/api/worklist", headers=bearer) as response:
            assert response.status == 403
        async with client.post(f"{url}/api/auth/2fa/enrol", headers=bearer) as response:
            assert response.status == 200
            secret = (await response.json())["secret"]
        async with client.post(f"{url}/api/auth/2fa/verify", headers=bearer,
                               json={"code": pyotp.TOTP(secret).now()}) as response:
            assert response.status == 200
            backup_codes = (await response.json())["backup_codes"]
            assert len(backup_codes) == 10

        status, body = await login()
        assert status == 401 and body["second_factor_required"] is True
        status, tokens = await login(backup_code=backup_codes[0])
        assert status == 200 and tokens["two_factor_enrolment_required"] is False
        async with client.get(f"{url}/api/worklist",
                              headers={"Authorization": f"Bearer {tokens['access_token']}"}) as response:
            assert response.status == 200
