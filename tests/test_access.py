"""Principals, permissions and the role file (hkops.security.access)."""

from __future__ import annotations

import pickle

import pytest

from hkops.errors import InvalidValue
from hkops.security import access


def test_shipped_roles_use_only_known_permissions_and_cover_the_issue_roles():
    roles = access.load_roles()
    assert {"admin", "ops", "warehouse", "sales", "finance", "analyst", "agent", "auditor"} <= set(roles)
    assert all(p in access.PERMISSIONS for granted in roles.values() for p in granted)
    assert "pii.read" not in roles["analyst"]
    assert not {p for p in roles["analyst"] if p.endswith(".write")}


def test_a_principal_is_its_name_and_carries_its_permissions_across_pickling():
    ann = access.Principal("ann", roles=["ops"], permissions={"numbers.write"}, agent=None, user_id=3)
    assert ann == "ann" and f"{ann}" == "ann" and ann.can("numbers.write") and not ann.can("refunds.write")
    again = pickle.loads(pickle.dumps(ann))
    assert isinstance(again, access.Principal) and again.permissions == ann.permissions and again.user_id == 3


def test_require_refuses_a_missing_permission_naming_who_what_and_which():
    clerk = access.Principal("bo", roles=["sales"], permissions={"orders.write"})
    access.require(clerk, "orders.write", "take an order")
    with pytest.raises(access.AccessDenied, match=r"bo may not refund order X.*'refunds.write'"):
        access.require(clerk, "refunds.write", "refund order X")
    with pytest.raises(KeyError):
        access.require(clerk, "no.such", "anything")


def test_a_role_file_with_an_unknown_permission_is_refused_with_its_line(tmp_path):
    path = tmp_path / "roles.toml"
    path.write_text('[roles.clerk]\npermissions = [\n  "orders.read",\n  "orders.destroy",\n]\n', encoding="utf-8")
    with pytest.raises(InvalidValue, match=r"line 4: role clerk permission 'orders.destroy'"):
        access.load_roles(path)
