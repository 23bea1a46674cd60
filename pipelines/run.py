"""The main job: episodes, meta-training (Transformer, LSTM, MLP, MAML, VSML), evaluation,
export to saved_models/gpicl/VERSION, report.

    python -m pipelines.run --preset cpu --workdir runs/cpu

`--preset smoke` takes about a minute here; `cpu` at most 20 minutes. Writes
WORKDIR/report/report.md (Table-1 shape), report.json and accuracy plots.
`--preset functions_cpu` (functions_smoke) runs function regression instead:
MSE tables by number of context points, MSE plots and task plots; no export.
"""

from absl import app, flags

from pipelines import common

flags.DEFINE_string("workdir", None, "where every stage writes", required=True)
flags.DEFINE_string("export_dir", "saved_models", "TF Serving model base ('' = no export)")
flags.DEFINE_string("export_name", "gpicl", "exported model name")
FLAGS = flags.FLAGS
flags.adopt_module_key_flags(common)   # --preset, --config, --set appear in --help


def main(argv):
    del argv
    common.quiet_tensorflow()
    from gpicl_tf import main_job

    report = main_job.run_all(common.resolve_config(), FLAGS.workdir,
                              export_dir=FLAGS.export_dir or None,
                              export_name=FLAGS.export_name, verbose=2)
    with open(f"{FLAGS.workdir}/report/report.md") as f:
        print(f.read())
    print(f"stage times (s): {report['seconds']}")
    print(f"report: {FLAGS.workdir}/report/")
    if "export" in report:
        print(f"exported: {report['export']}")


if __name__ == "__main__":
    common.run(main)
