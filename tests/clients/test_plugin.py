"""The helpers another app's ClientApp calls: its reply tagged, its truth written in the contract's form."""

import json

import numpy as np
import pytest
from flwr.app import ArrayRecord, RecordDict

from clients.plugin import record_truth, tag_reply
from fednas.schema import SCHEMA_VERSION
from fednas.truth import read_truth


def test_a_tagged_reply_carries_the_partition_id_as_the_server_reads_it():
    content = tag_reply(RecordDict({"arrays": ArrayRecord([np.zeros(2, np.float32)])}), np.int64(4))
    assert dict(content["client"]) == {"partition-id": 4} and list(content.array_records) == ["arrays"]
    assert type(content["client"]["partition-id"]) is int  # a plain int, as the server checks it
    for bad in (1.5, "3", True):
        with pytest.raises(TypeError):
            tag_reply(RecordDict(), bad)


def test_record_truth_writes_the_steps_in_order_and_the_pool(tmp_path):
    path = record_truth(tmp_path, 3, 1, [np.array([9, 4]), [7]], pool=np.arange(12))
    assert path == tmp_path / "truth" / "r003-p1.json"
    assert json.loads(path.read_text()) == {"schema-version": SCHEMA_VERSION, "alpha-indices": [9, 4, 7],
                                            "alpha-batch-sizes": [2, 1], "alpha-pool": list(range(12))}
    truth = read_truth(tmp_path, {"round": 3, "partition-id": 1})
    assert truth.samples() == [(0, 0, 9), (0, 1, 4), (1, 0, 7)]
