"""Speed and size of a run's models on this machine, measured the same way for every model.

    python -m distill_core bench RUN                      # teacher, student, int8 student -> RUN/bench.json
    python -m distill_core bench RUN --arch bert-base     # bert-base / distilbert-base shapes -> RUN/bench_bert-base.json
    python -m distill_core bench RUN --repeats 3 --warmup 1 --train-steps 2    # a smoke test

    from distill_core.bench.run import run_bench
    from distill_core.bench.settings import BenchSettings
    bench = run_bench("RUN", BenchSettings(repeats=30))   # the same from Python; returns the bench.json dict

What is measured, per model (``teacher``, ``student``, ``student_int8`` on PyTorch; ``student_onnx`` and
``student_onnx_int8`` on ONNX Runtime):

- latency of ``TextClassifier.predict_proba([text])`` (tokenisation included) at batch 1: median and p95 over
  ``repeats`` timed calls after ``warmup`` untimed ones, for a test text of the dataset's median token length
  and for one of ``max_length`` tokens. The models are timed in blocks that take turns (``time_calls``), so
  load from elsewhere hits them alike; ``machine.other_processes_cpu_share`` says how much there was;
- throughput (texts/s) at ``batch_size`` over the test texts, and the test accuracy and macro-F1 of that pass
  (all models go through the same code, so the int8 student's cost is read against the fp32 student's);
- load time from disk and peak memory on the device the model runs on, each in a fresh Python process per model
  (``probe``), so that models do not pollute each other's figures: on the CPU the process's peak resident memory
  (``VmHWM``), on a GPU the most memory torch's tensors held (``torch.cuda.max_memory_allocated``);
  ``peak_memory_device`` and ``peak_memory_kind`` say which. The files are in the page cache by then (warm load);
  the int8 student is quantised from the fp32 checkpoint at load, so its peak includes that;
- analytic forward FLOPs at each length (``forward_flops``) and the achieved GFLOP/s, next to the machine's
  own fp32 matmul rate (``machine.matmul_gflops``).

``student_int8`` is the distilled student with every ``nn.Linear`` dynamically quantised to int8 in memory
(``quantize_int8``), on the quantized engine that is faster here (``pick_qengine``); no int8 checkpoint is
written. ``student_onnx`` and ``student_onnx_int8`` are the run's ONNX export (``export RUN --int8``) when it is
current, else one made the same way for the bench and not kept (``--no-onnx`` skips them); ONNX Runtime gets as
many threads as torch. The PyTorch models are timed first (taking turns, as above), then each ONNX Runtime model
alone, the previous one released: ONNX Runtime's idle threads spin for a while after each call and would slow
whatever is timed next on the same cores. The training comparison trains the run's teacher for ``train_steps`` steps three ways on the run's
training split: the pipeline's own loop and length-grouped batches, the same loop with every example padded to
``max_length`` (as the reports did), and transformers' ``Trainer`` with its defaults (random batches padded per
batch) -- same model, data, batch size and AdamW.

``--device cuda`` runs the PyTorch fp32 models on the GPU (every timing waits for the GPU's queued work) and the
training comparison there, every method at the same batch size on the same GPU, read against the GPU's matmul peak.
int8 is a CPU path (torch's dynamic quantisation has CPU kernels only; ONNX Runtime's dynamic int8 ops too): the int8
rows are measured on the CPU, titled so, and left out of the speed-up ratios against GPU rows. The fp32 ONNX row runs
on ONNX Runtime's ``CUDAExecutionProvider`` when it has one (the ``onnxruntime-gpu`` package), else on the CPU, and
``notes`` says why. Every model entry records its ``device`` (and ONNX Runtime's ``onnx_provider``).

``--arch bert-base`` swaps the run's models for randomly initialised ``bert-base-uncased`` and
``distilbert-base-uncased`` shapes (speed does not depend on the weights) on the run's tokenizer and test
texts, and writes ``bench_bert-base.json`` next to ``bench.json``, with the same schema; it reports no
accuracy (the weights are random) and skips the training comparison.

The package, one concern per module:

    settings      BenchSettings (one field per flag) and the constants; torch-free, the CLI builds its parser from it
    measure       the machine, timing, token lengths, FLOPs, int8 quantisation, throughput and accuracy
    probe         load time and peak memory in a fresh process (``python -m distill_core.bench.probe``)
    train_speed   the teacher-training comparison (pipeline, fixed padding, Trainer)
    run           ``run_bench``: the whole benchmark of one run, written to ``bench.json``
    report        reading ``bench.json``: speed-up ratios, int8 cost, the CLI's table; torch-free
    gpu_check     the GPU check (``scripts/gpu_check.sh``): quick run, bench, bert-base training, scoring -> one JSON
"""
