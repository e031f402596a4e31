"""Every registered architecture and fuser through the :class:`ModelTester` checks.

The fingerprints of ``unet``, ``mrn_bilinear`` and ``mrn_transposed`` (concat fuser) were computed
from the code before the models were restructured (issue 10): same seed, same initial weights.
A new architecture or fuser gets a tester here (the last test fails until it does).
"""

from __future__ import annotations

from model_tester import ModelTester

from mrseg.models import DEFAULT_FUSER, fuser_names, model_names, model_options


class TestUNet(ModelTester):
    name = "unet"
    j = 1
    FINGERPRINT = "2449321f18fb3451ba45397876ad5ad2bc5787de8c79bb93e1775f1de45b80ef"


class TestMRNBilinear(ModelTester):
    name = "mrn_bilinear"
    FINGERPRINT = "d0e871de3dc7331ba839635469956e6798b651819847b1070096bd1aabc8f694"


class TestMRNTransposed(ModelTester):
    name = "mrn_transposed"
    FINGERPRINT = "732385de03dc03864374789a751c45365dbfd42943a7fe307b95222afd995aab"


class TestMRNBilinearGated(ModelTester):
    name = "mrn_bilinear"
    fuser = "gated"
    FINGERPRINT = "e295b395aa5b70ed24c53d7834553d301c4425c45c26e36a135b89a701fe5615"


class TestMRNTransposedGated(ModelTester):
    name = "mrn_transposed"
    fuser = "gated"
    j = 2
    FINGERPRINT = "9f6b38b09fe41de9cbebd61a8754e82e8dcea61094d66c711280263ead7d2cf2"


TESTERS: list[type[ModelTester]] = [
    TestUNet,
    TestMRNBilinear,
    TestMRNTransposed,
    TestMRNBilinearGated,
    TestMRNTransposedGated,
]


def test_every_architecture_and_fuser_has_a_tester() -> None:
    covered = {(t.name, t.fuser) for t in TESTERS}
    expected = {(name, DEFAULT_FUSER) for name in model_names()}
    expected |= {(name, fuser) for name in model_names() if "fuser" in model_options(name) for fuser in fuser_names()}
    assert expected <= covered, sorted(expected - covered)
