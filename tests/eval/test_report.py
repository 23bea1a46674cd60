"""The report's Table-1 layout (gpicl_tf.eval.report.table1_markdown)."""

from gpicl_tf.eval import report as report_lib


def _method(last, ci=0.01):
    return {"last": last, "ci95": [ci], "mean": [last], "positions": [100]}


def _report():
    methods = {"GPICL Transformer": _method(0.801), "chance": _method(0.1, 0.0),
               "SGD (tuned)": _method(0.875), "VSML": _method(0.5)}
    return {
        "config": {"data": {"source": "digits"}},
        "datasets": {
            "digits (unseen tasks)": {"source": "digits", "split": "test", "length": 100,
                                      "methods": methods},
            "digits (seen tasks)": {"source": "digits", "split": "seen", "length": 100,
                                    "methods": {"GPICL Transformer": _method(0.99)}},
            "random (unseen dataset)": {"source": "random", "split": "test", "length": 100,
                                        "methods": {"GPICL Transformer": _method(1.0, 0.0)}},
            "kmnist (unseen dataset)": {"source": "tfds:kmnist", "split": "test",
                                        "length": 100,
                                        "methods": {"GPICL Transformer": _method(0.45)}}},
        "skipped": [{"dataset": "cifar10", "reason": "TFDS dataset cifar10 is not prepared\n"
                                                     "second line"}]}


def test_table1_rows_columns_and_the_papers_figures():
    lines = report_lib.table1_markdown(_report())
    table = [line for line in lines if line.startswith("| ")]
    assert table[0] == "| Method | MNIST | FashionMNIST | KMNIST | Random | CIFAR10 | SVHN |"
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in table[1:]}
    assert list(rows) == ["SGD (tuned)", "VSML", "GPICL Transformer", "chance"]
    assert rows["GPICL Transformer"][0] == "80.1 ± 1.0 (73.7)"       # unseen tasks, not seen
    assert rows["GPICL Transformer"][2] == "45.0 ± 1.0 (53.4)"
    assert rows["GPICL Transformer"][3] == "100.0 ± 0.0 (100.0)"
    assert rows["SGD (tuned)"][:2] == ["87.5 ± 1.0 (70.3)", "- (50.8)"]
    assert rows["VSML"][0] == "50.0 ± 1.0 (79.0)"
    assert rows["chance"][0] == "10.0 ± 0.0" and rows["chance"][5] == "- |"
    assert "CIFAR10: absent (TFDS dataset cifar10 is not prepared)." in lines
    assert "SVHN: absent (not in eval.datasets)." in lines
    assert "ours on digits" in lines[1]


def test_the_table1_section_appears_with_maml_or_vsml_rows_only():
    report = _report()
    assert "The paper's Table 1" in report_lib.markdown_table(report)
    for entry in report["datasets"].values():
        entry["methods"].pop("VSML", None)
    assert "The paper's Table 1" not in report_lib.markdown_table(report)
