#!/usr/bin/env bash
# The AdmIRE vs AdamW study of docs/results.md, in one resumable command.
#
#   tools/repro.sh            # run (or continue) the study, then report; finished runs are skipped
#   tools/repro.sh status     # one line per run: done / partial / missing, with its final val loss
#   tools/repro.sh report     # sharpness, tables and charts of whatever has finished so far
#   tools/repro.sh publish    # copy finished runs' small files to docs/results/runs (before a session ends)
#
# The runs (configs/repro/{adamw,admire}.toml, T = 1000 steps), started by one queue (`schedule`):
#   sweep   lr_max in SWEEP for each optimizer, seed 1; a best lr at the edge of the grid adds the next
#           value out (×2 or ÷2), so each optimizer's best is bracketed;
#   best lr as soon as an optimizer's own sweep is over, at its best lr: AdamW(2T) (AdamW), seeds 2
#           and 3 (seed 1 is the sweep run), AdmIRE with kappa = 2 (AdmIRE);
#   report  `ire sharpness` along the best-lr runs' checkpoints, `ire compare` (seed groups,
#           speed-ups vs AdamW(T) and AdamW(2T), sharpness) into docs/results/ (small files only:
#           metrics, charts, tables; never checkpoints).
# An interrupted run is resumed from its newest checkpoint (`ire train --resume`); a run directory without a
# checkpoint is started again. Each run's log is RUN.log next to its directory. A finished run gets
# `ire sharpness` at once (every checkpoint for seed 1 at T, the last for the others) and its small files are
# copied to docs/results/runs/NAME (commit them): on a fresh clone those runs are restored from there
# instead of trained again.
#
# Environment: IRE (the binary; default: build target/release/ire), REPRO_DIR (default runs/repro),
# REPRO_RESULTS (default docs/results), REPRO_T and REPRO_SHARPNESS (only to smoke-test this script),
# REPRO_JOBS runs at once (default 2) with REPRO_THREADS threads each (default 1): on 2 cores two 1-thread runs
# give 1.2× the tokens/s of one 2-thread run (measured, docs/results.md).
set -euo pipefail
cd "${REPRO_ROOT:-$(dirname "$0")/..}"  # REPRO_ROOT: the checkout, when running a copy of this script

OUT=${REPRO_DIR:-runs/repro}
JOBS=${REPRO_JOBS:-2}
THREADS=${REPRO_THREADS:-1}
RESULTS=${REPRO_RESULTS:-docs/results}
T=${REPRO_T:-1000}  # REPRO_T: only to smoke-test this script with short runs
SWEEP="1e-3 2e-3 4e-3"
SEEDS="2 3"
if [[ -z "${IRE:-}" ]]; then
    cargo build --release --quiet
    IRE=target/release/ire
fi
export IRE OUT THREADS T RESULTS

# Final validation loss of a run, or "inf" when it has none (or a non-finite one).
final_val() {
    local m="$1/metrics.jsonl"
    [[ -f "$m" && ! -f "$1/DIVERGED" ]] || { echo inf; return; }
    grep '"split":"val"' "$m" | tail -1 | sed -n 's/.*"loss":\([-0-9.eE+]*\).*/\1/p' | grep . || echo inf
}

# Whether RUN is over: its newest checkpoint is at its schedule's total, or it diverged (the guard stopped it
# on a non-finite loss; rerunning would diverge again at the same step).
finished() {
    local dir="$1" total="$2"
    [[ -d "$dir/checkpoints/$(printf 'step-%06d' "$total")" || -f "$dir/DIVERGED" || -f "$dir/RESTORED" ]]
}

# Copies a finished run's small files (metrics, config, sharpness; never checkpoints) to
# $RESULTS/runs/NAME, so that a fresh clone knows the run is done (see restore).
publish() {
    local dir="$1" to="$RESULTS/runs/${1##*/}" f
    mkdir -p "$to"
    for f in metrics.jsonl config.toml sharpness.jsonl DIVERGED; do
        [[ -f $dir/$f ]] && cp "$dir/$f" "$to/"
    done
    touch "$to/DONE"
}

# A run published by an earlier session (on another machine) but absent here: its directory is
# rebuilt from the published files and marked RESTORED (no checkpoints; not measured again).
restore() {
    local dir="$1" from="$RESULTS/runs/${1##*/}" f
    [[ -f $from/DONE && ! -e $dir ]] || return 1
    mkdir -p "$dir"
    for f in metrics.jsonl config.toml sharpness.jsonl DIVERGED; do
        [[ -f $from/$f ]] && cp "$from/$f" "$dir/"
    done
    touch "$dir/RESTORED"
    echo "[repro] restored ${dir##*/} from $from"
}

# Sharpness (ire sharpness, default settings; measured steps are skipped) of a run with
# checkpoints: every checkpoint with --all, else the last.
# sharp_finished RUN: along training for seed 1 at T (the sweep and kappa runs), at the end for the
# other seeds and AdamW(2T) (8 checkpoints: too dear along training).
sharp() {
    [[ -f $1/RESTORED || -f $1/DIVERGED ]] && return 0
    # shellcheck disable=SC2086  # REPRO_SHARPNESS: extra flags, e.g. "--probes 2" for a smoke test
    RAYON_NUM_THREADS=$THREADS "$IRE" sharpness "$@" ${REPRO_SHARPNESS:-} 2>>"$OUT/sharpness.log" | tee -a "$OUT/sharpness.txt"
}
sharp_finished() {
    if [[ $1 == *-s1 && $1 != *-2T-* ]]; then sharp "$1" --all >/dev/null; else sharp "$1" >/dev/null; fi
}

# run_one NAME CONFIG TOTAL [--set K=V ...]: train NAME to the end, resuming it when it has a checkpoint.
run_one() {
    local name="$1" config="$2" total="$3"
    shift 3
    local dir="$OUT/$name"
    restore "$dir" || true
    if finished "$dir" "$total"; then
        # Finished by an earlier version of this script: measured and published now.
        [[ -f $RESULTS/runs/$name/DONE ]] || { sharp_finished "$dir" && publish "$dir"; }
        return 0
    fi
    local status=0
    if compgen -G "$dir/checkpoints/step-*" >/dev/null; then
        echo "[repro] resume $name"
        RAYON_NUM_THREADS=$THREADS "$IRE" train --resume "$dir" --no-progress >>"$dir.log" 2>&1 || status=$?
    else
        rm -rf "$dir"
        echo "[repro] start  $name"
        RAYON_NUM_THREADS=$THREADS "$IRE" train --config "$config" --no-progress \
            --set run.dir="$dir" --set run.name="$name" "$@" >"$dir.log" 2>&1 || status=$?
    fi
    if [[ $status != 0 ]] && grep -q "non-finite .* at step" "$dir.log"; then
        grep "non-finite .* at step" "$dir.log" | tail -1 >"$dir/DIVERGED"
        echo "[repro] diverged $name: $(cat "$dir/DIVERGED")"
        publish "$dir"
        return 0
    fi
    finished "$dir" "$total" || { echo "[repro] $name did not finish: see $dir.log" >&2; return 1; }
    echo "[repro] done   $name  val $(final_val "$dir")"
    # Sharpness along its checkpoints now, while they are here; then the small files are kept.
    sharp_finished "$dir"
    publish "$dir"
}

# One job line: a run of OPT (adamw|admire) at LR with SEED, for TOTAL steps, and extra sets.
job() {
    local opt="$1" lr="$2" seed="$3" total="$4" tag="$5"
    shift 5
    echo "$opt$tag-lr$lr-s$seed configs/repro/$opt.toml $total --set schedule.lr_max=$lr --set run.seed=$seed" \
        "--set schedule.total=$total --set schedule.warmup=$((total / 20)) $*"
}

# The lr of OPT's sweep runs with the lowest final val loss.
best_lr() {
    local opt="$1" lr best="" best_loss=1e30 loss
    for d in "$OUT/$opt"-lr*-s1; do
        [[ -d "$d" ]] || continue
        lr=${d##*-lr}
        lr=${lr%-s1}
        loss=$(final_val "$d")
        [[ $loss == inf ]] && continue
        if awk -v a="$loss" -v b="$best_loss" 'BEGIN { exit !(a + 0 < b + 0) }'; then
            best=$lr
            best_loss=$loss
        fi
    done
    echo "$best"
}

# The sweep's grid of OPT, sorted by value.
grid() {
    for d in "$OUT/$1"-lr*-s1; do
        [[ -d "$d" ]] || continue
        d=${d##*-lr}
        echo "${d%-s1}"
    done | sort -g
}

# The sweep's next jobs for OPT: its unfinished grid runs; or, once all are finished and the best
# lr sits at an edge of the grid, the next lr outwards (two extensions at most). Empty: OPT's sweep is over.
sweep_jobs() {
    local opt="$1" lr pending="" best lo hi
    for lr in $(printf '%s\n' $SWEEP $(grid "$opt") | sort -u); do
        finished "$OUT/$opt-lr$lr-s1" "$T" || pending+="$(job "$opt" "$lr" 1 "$T" "")"$'\n'
    done
    [[ -z $pending ]] || { printf '%s' "$pending"; return 0; }
    [[ $(grid "$opt" | wc -l) -lt $(($(wc -w <<<"$SWEEP") + 2)) ]] || return 0
    best=$(best_lr "$opt")
    lo=$(grid "$opt" | head -1)
    hi=$(grid "$opt" | tail -1)
    if [[ $best == "$hi" ]]; then
        job "$opt" "$(awk -v x="$hi" 'BEGIN { printf "%g", 2 * x }')" 1 "$T" ""
    elif [[ $best == "$lo" ]]; then
        job "$opt" "$(awk -v x="$lo" 'BEGIN { printf "%g", x / 2 }')" 1 "$T" ""
    fi
}

# Every job of the study that can be named now, most urgent first (finished and running ones
# included; the scheduler skips them): both sweeps; then, for each optimizer whose sweep is over,
# its runs at its own best lr: AdamW(2T) first (the longest), the seeds, AdmIRE with kappa = 2.
plan() {
    local a="" m="" s
    sweep_jobs adamw
    sweep_jobs admire
    [[ -n $(sweep_jobs adamw) ]] || a=$(best_lr adamw)
    [[ -n $(sweep_jobs admire) ]] || m=$(best_lr admire)
    [[ -z $a ]] || job adamw "$a" 1 $((2 * T)) "-2T"
    for s in $SEEDS; do
        [[ -z $a ]] || job adamw "$a" "$s" "$T" ""
        [[ -z $m ]] || job admire "$m" "$s" "$T" ""
    done
    [[ -z $m ]] || job admire "$m" 1 "$T" "-k2" --set optim.ire.kappa=2
}

# Runs the study's jobs, JOBS at a time: whenever a slot is free, the first job of `plan` that is
# neither finished, running nor failed starts, so an optimizer's seed runs start as soon as its own
# sweep is over. A failed run is not retried in this call; the call then fails after the others.
schedule() {
    local -A running=() failed=()
    local line next name total pid status
    while :; do
        while ((${#running[@]} < JOBS)); do
            next=""
            while read -r line; do
                read -r name _ total _ <<<"$line"
                [[ " ${running[*]} " == *" $name "* || -n ${failed[$name]:-} ]] && continue
                finished "$OUT/$name" "$total" && [[ -f $RESULTS/runs/$name/DONE ]] && continue
                next=$line
                break
            done < <(plan)
            [[ -n $next ]] || break
            # shellcheck disable=SC2086  # the job line is NAME CONFIG TOTAL --set K=V ... (no blanks in values)
            run_one $next &
            running[$!]=${next%% *}
        done
        ((${#running[@]})) || break
        status=0
        wait -n -p pid || status=$?
        [[ $status == 0 ]] || failed[${running[$pid]}]=1
        unset "running[$pid]"
    done
    if ((${#failed[@]})); then
        echo "[repro] failed: ${!failed[*]}; fix them and rerun tools/repro.sh (finished runs are kept)" >&2
        exit 1
    fi
}

status() {
    local any=0
    for d in "$OUT"/*/; do
        [[ -d $d ]] || continue  # no run yet: the glob stays a literal `*/`
        any=1
        d=${d%/}
        local total
        total=$(run_total "$d")
        if finished "$d" "${total:-0}"; then s=done; elif compgen -G "$d/checkpoints/step-*" >/dev/null; then s=partial; else s=started; fi
        printf '%-28s %-8s val %s\n' "${d##*/}" "$s" "$(final_val "$d")"
    done
    [[ $any == 1 ]] || echo "[repro] no runs in $OUT yet (tools/repro.sh starts them)"
}

# schedule.total of run directory $1 (empty when it has no config.toml).
run_total() {
    sed -n 's/^total = \([0-9]*\).*/\1/p' "$1/config.toml" 2>/dev/null | head -1 || true
}

# The finished ones of the given run directories.
done_runs() {
    local d total
    for d in "$@"; do
        [[ -d $d ]] || continue
        total=$(run_total "$d")
        if [[ -n $total ]] && finished "$d" "$total" && [[ ! -f $d/DIVERGED ]]; then echo "$d"; fi
    done
}

# Tables and charts of whatever has finished, into $RESULTS (rerun as more runs finish).
report() {
    local a m
    a=$(best_lr adamw)
    m=$(best_lr admire)
    [[ -n $a && -n $m ]] || { echo "[repro] no finished sweep runs to report" >&2; exit 1; }
    mkdir -p "$RESULTS"
    local sweep_runs best cross
    mapfile -t sweep_runs < <(done_runs $(for o in adamw admire; do grid "$o" | sed "s#^#$OUT/$o-lr#; s#\$#-s1#"; done))
    mapfile -t best < <(done_runs "$OUT/adamw-lr$a"-s* "$OUT/admire-lr$m"-s* "$OUT/admire-k2-lr$m-s1")
    cross=()
    if [[ $a != "$m" ]]; then mapfile -t cross < <(done_runs "$OUT/adamw-lr$m-s1" "$OUT/admire-lr$a-s1"); fi
    # Sharpness: along training for seed 1 of each best lr, at the end for the rest.
    for d in $(done_runs "$OUT/adamw-lr$a-s1" "$OUT/admire-lr$m-s1"); do sharp "$d" --all; done
    for d in "${best[@]}" $(done_runs "$OUT/adamw-2T-lr$a-s1"); do sharp "$d"; done
    echo "[repro] best lr_max: adamw $a, admire $m" | tee "$RESULTS/best-lr.txt"
    "$IRE" compare --no-group "${sweep_runs[@]}" --out "$RESULTS/sweep" >/dev/null
    "$IRE" compare "${best[@]}" "${cross[@]}" $(done_runs "$OUT/adamw-2T-lr$a-s1") --out "$RESULTS/main" >/dev/null
    local two_t
    two_t=$(done_runs "$OUT/adamw-2T-lr$a-s1")
    if [[ -n $two_t ]]; then
        "$IRE" compare "$two_t" $(done_runs "$OUT/admire-lr$m"-s*) --out "$RESULTS/vs-2T" >/dev/null
    fi
    # The runs' small files (never checkpoints), with the sharpness measured above.
    for d in $(done_runs "$OUT"/*/); do publish "${d%/}"; done
    echo "[repro] report in $RESULTS: sweep/table.md, main/table.md${two_t:+, vs-2T/table.md}"
}

mkdir -p "$OUT"
# Runs published by an earlier session on another machine count as finished here.
for published in "$RESULTS"/runs/*/; do
    [[ -d $published ]] && { restore "$OUT/$(basename "$published")" || true; }
done
case "${1:-all}" in
    status) status ;;
    report) report ;;
    publish) for d in $(done_runs "$OUT"/*/); do [[ -f ${d%/}/RESTORED ]] || publish "${d%/}"; done ;;
    all)
        # The corpus once, before two runs would both try to prepare it (the second would fail on
        # the first's lock); a no-op when it is prepared.
        "$IRE" prepare --config configs/repro/adamw.toml >"$OUT/prepare.log" 2>&1 ||
            { echo "[repro] ire prepare failed: see $OUT/prepare.log" >&2; exit 1; }
        schedule
        report
        ;;
    *) echo "usage: tools/repro.sh [all|report|status|publish]" >&2; exit 2 ;;
esac
