//! Peak memory of `labelgen ingest` at 1x and 10x the input, for
//! BENCHMARKS.md: the claim is that memory is bounded by a partition, not
//! by the window, so 10x the partitions (of the same size) should need
//! about the same peak RSS.
//!
//! ```text
//! cargo run --release --example ingest_rss -- [ROWS_PER_PARTITION] [PARTITIONS_AT_1X]
//! ```
//!
//! For each scale it writes hive-partitioned logs (hourly partitions of
//! ROWS_PER_PARTITION rows; dialogues of 2-8 turns that run across hours,
//! in arrival order, 2% of rows delivered twice) under a temporary
//! directory, then runs the ingest stage in a child process (this program
//! again, with `child LOGS OUT`), which prints its own peak RSS (VmHWM)
//! when done. Linux only (/proc). With `RSS_TRACE=1` the child also prints
//! its anonymous and file-backed RSS every second (to see which phase holds
//! memory); `ingest_rss generate DIR PARTITIONS ROWS` only writes the logs.

use std::path::{Path, PathBuf};
use std::process::Command;

use labelgen::data::tables::{TableRow, Turn};
use labelgen::stages::ingest::{self, IngestConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const HOUR_US: i64 = 3_600_000_000;
/// 2026-12-01T00:00:00Z.
const START_US: i64 = 1_796_083_200_000_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        return child(Path::new(&args[2]), Path::new(&args[3]));
    }
    if args.get(1).map(String::as_str) == Some("generate") {
        // generate DIR PARTITIONS ROWS: only the logs, kept, for profiling.
        let written = generate(Path::new(&args[2]), args[3].parse()?, args[4].parse()?)?;
        println!("{written} rows written to {}", args[2]);
        return Ok(());
    }
    let rows: usize = args.get(1).map_or(Ok(40_000), |v| v.parse())?;
    let partitions: usize = args.get(2).map_or(Ok(12), |v| v.parse())?;
    let tmp = tempfile::tempdir()?;
    println!("rows per partition {rows}, partitions at 1x {partitions}");
    for scale in [1, 10] {
        let logs = tmp.path().join(format!("logs-{scale}x"));
        let written = generate(&logs, partitions * scale, rows)?;
        let out = tmp.path().join(format!("out-{scale}x"));
        let exe = std::env::current_exe()?;
        let child = Command::new(exe)
            .args(["child", path_str(&logs), path_str(&out)])
            .stderr(std::process::Stdio::inherit())
            .output()?;
        anyhow::ensure!(
            child.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&child.stderr)
        );
        print!(
            "{scale}x: {} partitions, {written} rows written; {}",
            partitions * scale,
            String::from_utf8_lossy(&child.stdout)
        );
        std::fs::remove_dir_all(&logs)?;
        std::fs::remove_dir_all(&out)?;
    }
    Ok(())
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Runs the stage and prints its summary figures and this process's peak RSS.
fn child(logs: &Path, out: &Path) -> anyhow::Result<()> {
    let mut config = IngestConfig::new(logs.to_path_buf(), out.to_path_buf());
    config.quiet = true;
    if std::env::var_os("RSS_TRACE").is_some() {
        std::thread::spawn(|| {
            let t0 = std::time::Instant::now();
            loop {
                let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
                let rss: Vec<&str> = s
                    .lines()
                    .filter(|l| l.starts_with("RssAnon:") || l.starts_with("RssFile:"))
                    .collect();
                eprintln!("{:.1}s {rss:?}", t0.elapsed().as_secs_f64());
                std::thread::sleep(std::time::Duration::from_millis(1000));
            }
        });
    }
    let summary = ingest::run(&config)?;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or("VmHWM: ?");
    println!(
        "rows_in {}, turns {}, open {}, exact duplicates {}, buckets {}, {:.1} s, peak RSS {}",
        summary.rows_in,
        summary.turns,
        summary.open_turns,
        summary.exact_duplicates,
        summary.buckets,
        summary.seconds,
        peak.trim_start_matches("VmHWM:").trim()
    );
    Ok(())
}

/// Writes `partitions` hourly partitions of about `rows` rows each; returns
/// the rows written.
fn generate(root: &Path, partitions: usize, rows: usize) -> anyhow::Result<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut pending: Vec<Turn> = Vec::new();
    let mut dialogue = 0usize;
    let mut written = 0;
    for hour in 0..partitions {
        let start = START_US + hour as i64 * HOUR_US;
        // Dialogues start through the hour; their later turns may fall in
        // the next hour (they are written when their time comes).
        let mut added = 0;
        while added < rows {
            let turns = rng.random_range(2..=8);
            added += turns as usize;
            let at = start + rng.random_range(0..HOUR_US);
            for t in 0..turns {
                pending.push(turn(dialogue, t, at + t as i64 * 40_000_000, &mut rng));
            }
            dialogue += 1;
        }
        let end = start + HOUR_US;
        let (mut now, later): (Vec<Turn>, Vec<Turn>) = pending
            .drain(..)
            .partition(|t| t.timestamp_us.unwrap_or(0) < end || hour + 1 == partitions);
        pending = later;
        let copies: Vec<Turn> = now.iter().step_by(50).cloned().collect();
        now.extend(copies);
        // Arrival order: shuffled.
        for i in (1..now.len()).rev() {
            now.swap(i, rng.random_range(0..=i));
        }
        written += now.len();
        write_partition(root, start, &now)?;
    }
    Ok(written)
}

fn turn(dialogue: usize, index: i32, at: i64, rng: &mut ChaCha8Rng) -> Turn {
    let words = [
        "play", "some", "jazz", "in", "the", "kitchen", "set", "a", "timer", "for",
    ];
    let utterance: Vec<&str> = (0..rng.random_range(4..12))
        .map(|_| words[rng.random_range(0..words.len())])
        .collect();
    Turn {
        dialogue_id: format!("dlg-{dialogue:09}"),
        turn_index: index,
        timestamp_us: Some(at),
        user_utterance: utterance.join(" "),
        system_response: format!("okay, {}", utterance.join(" ")),
        device_type: Some("speaker".into()),
        device_state: Some("idle".into()),
        domain: Some("music".into()),
        nlu_intent: Some("play_music".into()),
        dialogue_status: Some("completed".into()),
        asr_confidence: Some(rng.random_range(0.5..1.0)),
        nlu_confidence: Some(rng.random_range(0.5..1.0)),
        barge_in: Some(false),
        explicit_feedback: Some(0),
        audio_embedding: None,
    }
}

fn write_partition(root: &Path, start_us: i64, rows: &[Turn]) -> anyhow::Result<()> {
    let hour = start_us.div_euclid(HOUR_US);
    let stamp = ingest::layout::format_hour(hour);
    let dir: PathBuf = root.join(format!("date={}/hour={}", &stamp[..10], &stamp[11..13]));
    std::fs::create_dir_all(&dir)?;
    for (i, chunk) in rows.chunks(rows.len().div_ceil(4).max(1)).enumerate() {
        let batch = Turn::to_batch(chunk)?;
        let file = std::fs::File::create(dir.join(format!("part-{i:05}.parquet")))?;
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
        writer.write(&batch)?;
        writer.close()?;
    }
    Ok(())
}
