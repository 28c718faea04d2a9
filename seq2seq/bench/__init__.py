"""Benchmarks: measurement, not product.

The product is the rest of the `seq2seq` package (the pipeline stages, `Translator`, `serve`); none of
it imports from here but the CLI's `bench` group. This subpackage measures the product on the real
data through the product's own code (its training step and epoch batches, `Translator`, `seq2seq
translate` and `seq2seq serve` processes) and is what `seq2seq bench ...` runs. One module a family:

- `training`: training throughput and the CPU class it holds for (`bench train`)
- `memory`: resident memory against steps, one step's peak, memory as the corpus grows
  (`bench memory`, `bench step`, `bench scale`)
- `decoding`: translation speed and quality by decoding setting, paragraphs with sentence splitting
  on and off, streaming standard input (`bench translate`, `bench decode`, `bench paragraphs`,
  `bench stream`)
- `serving`: a server under closed- and open-loop load, /health beside attention requests
  (`bench serve`, `bench health`), and the helpers that start and measure a server
- `sweeps`: sweep files queued as DVC experiments (`bench queue`)
- `commands`: the `seq2seq bench` command group

The repository's `bench/` holds what cannot live here: `bench/sweeps/` (the sweep files that `bench
queue` takes) and three scripts, `profile_train.py` (it profiles older checkouts too, so it uses
only long-standing interfaces and none of this subpackage), `screenshot.py` (a browser; it makes the
README's picture) and `sentence_splitters.py` (the candidate splitters, which the product does not
install).

Speed is measured here, not in tests. The machine is noisy, so compare variants as ratios within one run."""
