#!/bin/sh
# The example programs and the benchmark against a hostile command line, one case per ctest test
# (tests/cli/CMakeLists.txt registers them):
#
#   cli_test.sh CASE PROGRAM
#
# Each case runs PROGRAM once and checks its exit status, that the output (stdout and stderr
# together) matches a pattern, and, where files are involved, what is on disk afterwards. Cases
# that train need Fashion-MNIST ($NABLA_FASHION_MNIST or /usr/share/datasets/fashion-mnist) and
# exit 77 (ctest: skipped) without it; they train on a few hundred images, for a second or two.
set -u
case_name=$1
prog=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/nabla_cli_test.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
out="$work/output.txt"
small="--epochs 1 --train-limit 256 --batch 64"

fail() {
  echo "FAIL ($case_name): $*"
  echo "---- output of: $prog $cmd_args"
  cat "$out"
  exit 1
}

# run ARGS...: runs the program with stdout and stderr in $out, its status in $status.
run() {
  cmd_args="$*"
  "$prog" "$@" > "$out" 2>&1
  status=$?
}

# expect STATUS PATTERN: the last run exited with STATUS (or "nonzero") and its output matches
# the extended regular expression PATTERN.
expect() {
  if [ "$1" = nonzero ]; then
    [ "$status" -ne 0 ] || fail "exit status 0, expected non-zero"
  else
    [ "$status" -eq "$1" ] || fail "exit status $status, expected $1"
  fi
  grep -Eq -- "$2" "$out" || fail "no line matches: $2"
  # Whatever went wrong, the program says so itself: never std::terminate, never a signal.
  if grep -Eq 'terminate called|Segmentation fault|Aborted' "$out"; then fail "crashed"; fi
  [ "$status" -lt 128 ] || fail "killed by signal $((status - 128))"
}

needs_data() {
  dir=${NABLA_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
  [ -f "$dir/train-images-idx3-ubyte.gz" ] || [ -f "$dir/train-images-idx3-ubyte" ] || {
    echo "skipped: no Fashion-MNIST in $dir"
    exit 77
  }
}

# make_fake_fashion_mnist DIR: a Fashion-MNIST of 16 training and 16 test images (uncompressed IDX
# files, pixels from a repeated text, labels 0-9), for runs that must be fast and need no dataset.
make_fake_fashion_mnist() {
  mkdir -p "$1"
  for set in train t10k; do
    { printf '\000\000\010\003\000\000\000\020\000\000\000\034\000\000\000\034'
      yes "nabla $set" | head -c 12544; } > "$1/$set-images-idx3-ubyte"
    printf '\000\000\010\001\000\000\000\020\000\001\002\003\004\005\006\007\010\011\000\001\002\003\004\005' \
      > "$1/$set-labels-idx1-ubyte"
  done
}

# What the per-program cases use: the flags --help must list, a bad value and a value out of range
# with what the error says is expected, the extra flags of the --name=value run and its weights.
name=$(basename "$prog")
fashion_flags="--epochs --batch --lr --augment --device --data --seed --train-limit --out"
equals_extra=""
case $name in
  nabla-mlp)
    flags="$fashion_flags --dropout" stem=mlp equals_extra="--dropout=0.1"
    bad_flag=--epochs bad_value=3x bad_expected="an integer from 1 to 100000"
    range_flag=--epochs range_value=0 range_expected="an integer from 1 to 100000" ;;
  nabla-cnn)
    flags="$fashion_flags --bn --dropout" stem=cnn_bn equals_extra="--bn=1 --dropout=0.3"
    bad_flag=--lr bad_value=abc bad_expected="a finite number > 0"
    range_flag=--batch range_value=65537 range_expected="an integer from 1 to 65536" ;;
  nabla-lstm-rows)
    flags="$fashion_flags --hidden --clip" stem=lstm_rows equals_extra="--hidden=16 --clip=0.5"
    bad_flag=--hidden bad_value=12.5 bad_expected="an integer from 1 to 16384"
    range_flag=--clip range_value=-1 range_expected="a finite number >= 0" ;;
  nabla-char-lm)
    flags="--epochs --hidden --layers --embed --seq --batch --lr --clip --dropout --device --prompt --temperature
      --sample --seed --max-chars --steps-per-epoch"
    bad_flag=--temperature bad_value=hot bad_expected="a number >= 0.01 and <= 100"
    range_flag=--layers range_value=65 range_expected="an integer from 1 to 64" ;;
  nabla-bench)
    flags="--workload --device --mode --threads --steps --warmup"
    bad_flag=--warmup bad_value=ten bad_expected="an integer from 0 to 1000000"
    range_flag=--steps range_value=0 range_expected="an integer from 1 to 1000000" ;;
esac

case $case_name in
  # ---- flags: whole values, in range, named in the error ----------------------------------------
  batch_fraction) run --batch 1.9; expect 2 "nabla-mlp: error: --batch: expected an integer from 1 to 65536, got '1\.9'" ;;
  batch_suffix)   run --batch 1abc; expect 2 "--batch: expected an integer from 1 to 65536, got '1abc'" ;;
  batch_equals)   run --batch=0; expect 2 "--batch: expected an integer from 1 to 65536, got '0'" ;;
  seed_negative)  run --seed -1; expect 2 "--seed: expected an integer from 0 to 18446744073709551615, got '-1'" ;;
  epochs_nan)     run --epochs nan; expect 2 "--epochs: expected an integer from 1 to 100000, got 'nan' \(not a number\)" ;;
  lr_nan)         run --lr nan; expect 2 "--lr: expected a finite number > 0, got 'nan' \(not a number\)" ;;
  lr_negative)    run --lr -1e-3; expect 2 "--lr: expected a finite number > 0, got '-1e-3'$" ;;
  dropout_one)    run --dropout 1; expect 2 "--dropout: expected a number >= 0 and < 1, got '1'" ;;
  unknown_flag)   run --bach 3; expect 2 "unknown argument '--bach' \(run nabla-mlp --help for the options\)" ;;
  missing_value)  run --epochs; expect 2 "--epochs: 1 required N missing" ;;
  char_lm_batch_huge)
    run --batch 4611686018427387904
    expect 2 "--batch: expected an integer from 1 to 65536, got '4611686018427387904'" ;;
  char_lm_tokens_per_step)
    run --batch 65536 --seq 65536
    expect 2 "--batch x --seq: expected at most 16777216 characters per step, got '65536 x 65536'" ;;
  bench_threads_huge)
    run --threads 100000
    expect 2 "--threads: expected an integer from 0 \(OpenMP's default\) to [0-9]+, the processors of this machine, got '100000'" ;;
  bench_steps_suffix) run --steps 5x; expect 2 "--steps: expected an integer from 1 to 1000000, got '5x'" ;;

  # ---- every program: --help, a bad value, a value out of range, --name=value ---------------------
  # (registered as cli.<program>.<case>; the flags differ by program)
  help)
    cmd_args="--help"
    "$prog" --help > "$out" 2> "$work/stderr"
    status=$?
    expect 0 "^Usage: $name "
    for flag in $flags; do
      grep -Eq -- "^ +$flag[ ,]" "$out" || fail "--help does not list $flag"
    done
    [ -s "$work/stderr" ] && { cat "$work/stderr" >> "$out"; fail "--help wrote to stderr"; }
    ;;
  bad_value)
    # set by program below: bad_flag bad_value bad_expected
    run "$bad_flag" "$bad_value"
    expect 2 "^$name: error: $bad_flag: expected $bad_expected, got '$bad_value'\$"
    ;;
  out_of_range)
    run "$range_flag=$range_value"
    expect 2 "^$name: error: $range_flag: expected $range_expected, got '$range_value'\$"
    ;;
  equals_accepted)
    case $name in
      nabla-mlp|nabla-cnn|nabla-lstm-rows)
        make_fake_fashion_mnist "$work/data"
        # --augment 1 (a switch with its value after a space) beside the --name=value forms
        run --data="$work/data" --epochs=2 --batch=8 --train-limit=12 --lr=0.01 --seed=3 --device=cpu \
          --out="$work/out" --augment 1 $equals_extra
        expect 0 "^RESULT test_accuracy=[0-9.]+ epochs=2 "
        grep -q "^Fashion-MNIST: 12 training and 16 test images; .* augmentation shift 2 px" "$out" ||
          fail "--data, --train-limit or --augment not taken"
        [ -s "$work/out/$stem.safetensors" ] || fail "no $work/out/$stem.safetensors"
        ;;
      nabla-char-lm)
        yes 'the quick brown fox jumps over the lazy dog' | head -c 2000 > "$work/text.txt"
        run --epochs=2 --steps-per-epoch=3 --hidden=8 --embed=4 --layers=1 --seq=8 --batch=2 --sample=5 \
          --prompt=the --device=cpu --max-chars=1500 "$work/text.txt"
        expect 0 "^RESULT val_bpc=[0-9.]+ epochs=2 "
        grep -q "^text: 1500 bytes from $work/text.txt" "$out" || fail "--max-chars or PATH not taken"
        ;;
      nabla-bench)
        run --workload=mlp --steps=1 --warmup=0 --threads=1 --device=cpu --mode=fp32
        expect 0 '"workload": "mlp", "device": "cpu", "mode": "fp32".*"threads": 1\}'
        ;;
    esac
    ;;

  # ---- output: checked before training, never silently lost --------------------------------------
  out_is_a_file)
    : > "$work/file"
    run --out "$work/file"
    expect 1 "the output folder '.*/file' \(--out\) is not a folder"
    grep -q "Epoch" "$out" && fail "trained before finding the output folder bad"
    ;;
  out_unwritable)
    run --out /proc/self
    expect 1 "cannot write in the output folder '/proc/self' \(--out\)"
    ;;
  out_uncreatable)
    run --out /proc/nabla-no-such-folder
    expect 1 "cannot create the output folder '/proc/nabla-no-such-folder' \(--out\)"
    ;;
  save_fallback)
    needs_data
    mkdir -p "$work/out/mlp.safetensors/blocker"  # the folder is writable, the file is not
    TMPDIR="$work/tmp" && mkdir -p "$TMPDIR" && export TMPDIR
    run $small --out "$work/out"
    expect 1 "saved the weights to $work/tmp/nabla-[0-9]+/mlp\.safetensors instead"
    grep -q "^RESULT test_accuracy=" "$out" || fail "no RESULT line"
    ls "$work"/tmp/nabla-*/mlp.safetensors > /dev/null 2>&1 || fail "no fallback file"
    ;;
  out_with_a_quote)
    needs_data
    run $small --out "$work/it's; touch $work/injected; '"
    expect 0 "a quote or control character in the path: no plot"
    [ -s "$work/it's; touch $work/injected; '/mlp.safetensors" ] || fail "no weights in the quoted folder"
    [ -e "$work/injected" ] && fail "the path reached a shell"
    ;;
  trains_and_saves)
    needs_data
    run $small --out "$work/out"
    expect 0 "^RESULT test_accuracy=0\.[0-9]+ epochs=1"
    [ -s "$work/out/mlp.safetensors" ] || fail "no $work/out/mlp.safetensors"
    [ -s "$work/out/mlp_history.csv" ] || fail "no history"
    ;;

  # ---- a loss that turns NaN: an error, and the last good weights stay --------------------------
  lr_huge_keeps_weights)
    needs_data
    mkdir -p "$work/out" && echo "good weights" > "$work/out/mlp.safetensors"
    run --lr 1e30 --epochs 2 --train-limit 512 --batch 64 --out "$work/out"
    expect 1 "nabla-mlp: error: fit: the training loss is (not a number|infinite)"
    [ "$(cat "$work/out/mlp.safetensors")" = "good weights" ] || fail "mlp.safetensors was overwritten"
    grep -q "^RESULT" "$out" && fail "a RESULT line after a NaN loss"
    ;;

  char_lm_endless_file)
    run /dev/zero --max-chars 0
    expect 1 "char_lm: /dev/zero holds more than 256 MiB of text; pass --max-chars N" ;;
  char_lm_lr_huge)
    [ -d /usr/share/games/fortunes ] || { echo "skipped: no /usr/share/games/fortunes"; exit 77; }
    # 1e38: the weights overflow within the epoch whichever kernels run (at 1e30 the LSTM's float32
    # path on oneDNN kept a huge but finite loss for 10 epochs where nabla's own kernels hit NaN).
    run --lr 1e38 --max-chars 20000 --steps-per-epoch 25 --hidden 32 --embed 8 --layers 1 --seq 32 --batch 8
    expect 1 "nabla-char-lm: error: char_lm: the training loss is (not a number \(nan\)|infinite) at epoch 1, step 25"
    grep -q "^RESULT" "$out" && fail "a RESULT line after a NaN loss"
    ;;

  # ---- standard output that cannot be written ----------------------------------------------------
  help_to_full_disk)
    cmd_args="--help > /dev/full"
    "$prog" --help > /dev/full 2> "$out"
    status=$?
    expect 1 "cannot write to standard output"
    ;;
  train_to_full_disk)
    needs_data
    cmd_args="$small --out $work/out > /dev/full"
    "$prog" $small --out "$work/out" > /dev/full 2> "$out"
    status=$?
    expect 1 "(cannot write to standard output|cannot write to file)"
    ;;
  bench_to_full_disk)
    cmd_args="--workload mlp --steps 1 --warmup 0 --threads 1 > /dev/full"
    "$prog" --workload mlp --steps 1 --warmup 0 --threads 1 > /dev/full 2> "$out"
    status=$?
    expect 1 "cannot write to standard output"
    ;;
  *) echo "unknown case $case_name"; exit 1 ;;
esac
echo "ok ($case_name)"
