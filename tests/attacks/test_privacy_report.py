import math

from attacks.privacy_report import covers, dp_section, noise_source


def _row(update_covers_all: int, secure: int = 0, sgd: bool = False) -> dict:
    row = {"dp-delta": 1e-5, "dp-secure-rng": secure, "dp-update-epsilon": 21.4, "dp-update-epsilon-rdp": 21.4,
           "dp-update-epsilon-prv": 20.1, "dp-update-covers-all": update_covers_all}
    if sgd:
        row.update({"dp-sgd-epsilon": 0.8, "dp-sgd-epsilon-rdp": 0.8, "dp-sgd-epsilon-prv": 0.07, "dp-sgd-covers-all": 1})
    covering = [m for m in ("dp-sgd", "dp-update") if row.get(f"{m}-covers-all") == 1]
    for suffix in ("", "-rdp", "-prv"):
        row[f"dp-epsilon{suffix}"] = min((row[f"{m}-epsilon{suffix}"] for m in covering), default=math.inf)
    return row


def test_the_section_says_what_each_epsilon_covers_and_where_the_noise_came_from():
    alpha_only = [_row(0), {**_row(0), "dp-epsilon": None}]  # a capture stores ∞ as null
    text = "\n".join(dp_section(alpha_only))
    assert "alpha only" in text and "| ∞ |" in text  # no ε for the reply as a whole
    assert "20.1" in text and "21.4" in text  # the tight ε beside RDP's
    assert "removable by anyone who knows the seed" in text
    both = [_row(0, sgd=True)]
    assert covers(both, "dp-sgd") == "every array sent" and covers(both, "dp-update").startswith("alpha only")
    assert "| **the reply as a whole** (`dp-epsilon`) | 0.8 | 0.8 | 0.07 |" in "\n".join(dp_section(both))
    assert noise_source([_row(1, secure=1)]).startswith("OS entropy")
    assert covers([_row(1), _row(0)], "dp-update").startswith("every array sent for some")


def test_no_section_without_dp():
    assert dp_section([{"capture": "r001-n1", "status": "ok"}]) == []
