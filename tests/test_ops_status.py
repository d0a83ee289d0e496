"""The error codes have one source in C++ (csrc/common/args.h INSPO_STATUS_CODES, exported as
_C.STATUS_CODES) and one in Python (inspo_ext._validation.StatusCode): the two must agree."""

from __future__ import annotations

import pytest

from inspo_ext import _backend
from inspo_ext import _validation as v

pytestmark = pytest.mark.skipif(_backend._C is None, reason="needs the compiled module inspo_ext._C")


def test_python_status_codes_are_the_compiled_ones():
    assert {code.name: int(code) for code in v.StatusCode} == dict(_backend._C.STATUS_CODES)


def test_status_packing_is_the_compiled_one():
    assert (v.STATUS_OK, v.CODE_BITS) == (_backend._C.STATUS_OK, _backend._C.STATUS_CODE_BITS)
    assert max(v.StatusCode) < 1 << v.CODE_BITS  # every code fits below the flat index
