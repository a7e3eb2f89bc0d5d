//! Model directories from an untrusted source (issue 17): hostile sizes,
//! mismatched vocabularies, links out of the directory, truncated or lying
//! safetensors. Each goes through `labelgen label --model` and must end in a
//! clear error naming the file (and the field where there is one): exit
//! status 2, never a panic (101), never a signal, never an output. The child
//! runs under an address-space limit, so a loader that tried to allocate
//! from a hostile size would die instead of passing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Tiny, pretrain_tiny, s, simulate, stderr};
use serde_json::{Value, json};

/// Address space the child may map: far above what a tiny model needs,
/// far below what a hostile size would ask for.
const ADDRESS_SPACE: &str = "--as=8589934592";

fn label_with(model: &Path, logs: &Path, out: &Path) -> std::process::Output {
    let bin = env!("CARGO_BIN_EXE_labelgen");
    let args = [
        "label",
        "--model",
        s(model),
        "--logs",
        s(logs),
        "--out",
        s(out),
        "--quiet",
    ];
    if Path::new("/usr/bin/prlimit").exists() {
        Command::new("/usr/bin/prlimit")
            .arg(ADDRESS_SPACE)
            .arg("--")
            .arg(bin)
            .args(args)
            .output()
            .unwrap()
    } else {
        println!("prlimit not found: hostile models run without an address-space limit");
        Command::new(bin).args(args).output().unwrap()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn edit_config(dir: &Path, edit: impl Fn(&mut Value)) {
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(path, serde_json::to_vec(&config).unwrap()).unwrap();
}

/// A safetensors file: an 8-byte little-endian header length, the JSON
/// header, the data.
fn safetensors(header_len: u64, header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut bytes = header_len.to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(data);
    bytes
}

/// The first 4 bytes of the weights' data (the first tensor's first
/// value, an F32 in a model labelgen wrote) replaced by `value`.
fn poison_first_weight(dir: &Path, value: f32) {
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let start = 8 + header_len;
    bytes[start..start + 4].copy_from_slice(&value.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

type Mutation = Box<dyn Fn(&Path, &Path)>;

/// (name, mutation of a copy of a good model directory, words the error must hold).
type Case = (&'static str, Mutation, Vec<&'static str>);

fn config(edit: fn(&mut Value)) -> Mutation {
    Box::new(move |d, _| edit_config(d, edit))
}

fn write(name: &'static str, bytes: Vec<u8>) -> Mutation {
    Box::new(move |d, _| std::fs::write(d.join(name), &bytes).unwrap())
}

/// Moves the file outside the model directory and leaves a symlink to it.
fn link_out(name: &'static str) -> Mutation {
    Box::new(move |d, outside| {
        let target = outside.join(name);
        std::fs::rename(d.join(name), &target).unwrap();
        std::os::unix::fs::symlink(&target, d.join(name)).unwrap();
    })
}

fn cases() -> Vec<Case> {
    [config_cases(), file_cases(), weights_cases()]
        .into_iter()
        .flatten()
        .collect()
}

/// config.json values that are hostile (sizes that would allocate without
/// bound) or inconsistent with the other files.
fn config_cases() -> Vec<Case> {
    vec![
        (
            "terabyte hidden size",
            config(|c| c["encoder"]["hidden_size"] = json!(1u64 << 40)),
            vec!["config.json", "encoder.hidden_size"],
        ),
        (
            "negative layer count",
            config(|c| c["encoder"]["num_hidden_layers"] = json!(-3)),
            vec!["config.json", "-3"],
        ),
        (
            "a million layers",
            config(|c| c["encoder"]["num_hidden_layers"] = json!(1_000_000)),
            vec!["config.json", "encoder.num_hidden_layers"],
        ),
        (
            "zero attention heads",
            config(|c| c["encoder"]["num_attention_heads"] = json!(0)),
            vec!["config.json", "num_attention_heads 0"],
        ),
        (
            "huge vocabulary",
            config(|c| c["encoder"]["vocab_size"] = json!(u64::MAX)),
            vec!["config.json", "encoder.vocab_size"],
        ),
        (
            "parameter budget",
            config(|c| {
                c["encoder"]["vocab_size"] = json!(1 << 20);
                c["encoder"]["hidden_size"] = json!(1 << 14);
            }),
            vec!["config.json", "parameters"],
        ),
        (
            "zero dialogue heads",
            config(|c| c["dialogue"]["num_heads"] = json!(0)),
            vec!["config.json", "dialogue.num_heads"],
        ),
        (
            "absurd max_turns",
            config(|c| c["dialogue"]["max_turns"] = json!(1u64 << 50)),
            vec!["config.json", "dialogue.max_turns"],
        ),
        (
            "absurd audio_dim",
            config(|c| c["features"]["audio_dim"] = json!(1u64 << 40)),
            vec!["config.json", "features.audio_dim"],
        ),
        (
            "max_tokens past the positions",
            config(|c| c["max_tokens"] = json!(100_000)),
            vec!["config.json", "max_tokens"],
        ),
        (
            "negative layer-norm epsilon",
            config(|c| c["encoder"]["layer_norm_eps"] = json!(-1.0)),
            vec!["config.json", "layer_norm_eps"],
        ),
        (
            "pad token outside the vocabulary",
            config(|c| c["encoder"]["pad_token_id"] = json!(4_000_000)),
            vec!["config.json", "pad_token_id"],
        ),
        (
            "vocabulary larger than the weights",
            config(|c| c["encoder"]["vocab_size"] = json!(1000)),
            vec!["model.safetensors", "do not fit"],
        ),
        (
            "vocabulary smaller than the tokenizer",
            config(|c| c["encoder"]["vocab_size"] = json!(100)),
            vec!["tokenizer.json", "word pieces", "vocab_size 100"],
        ),
        (
            "wider than the weights",
            config(|c| c["encoder"]["intermediate_size"] = json!(8)),
            vec!["model.safetensors", "do not fit"],
        ),
        (
            "another architecture",
            config(|c| c["architecture"] = json!("pickle")),
            vec!["config.json", "architecture"],
        ),
    ]
}

/// Files that are not what their names say, or that lead outside the directory.
fn file_cases() -> Vec<Case> {
    vec![
        (
            "config not JSON",
            write("config.json", b"{\"architecture\": ".to_vec()),
            vec!["config.json", "not JSON"],
        ),
        (
            "config empty",
            write("config.json", Vec::new()),
            vec!["config.json"],
        ),
        (
            "config not UTF-8",
            write("config.json", vec![0xff, 0xfe, 0x00, 0x7b]),
            vec!["config.json"],
        ),
        (
            "tokenizer garbage",
            write("tokenizer.json", b"{\"model\": 7}".to_vec()),
            vec!["tokenizer.json"],
        ),
        (
            // tokenizers 0.22 panicked on this (found by tests/fuzz).
            "tokenizer cut short inside its decoder",
            Box::new(|d, _| {
                let path = d.join("tokenizer.json");
                let text = std::fs::read_to_string(&path).unwrap();
                let cut = text.find("\"decoder\"").unwrap() + "\"decoder\":".len();
                std::fs::write(&path, &text[..cut]).unwrap();
            }),
            vec!["tokenizer.json", "EOF"],
        ),
        (
            // As many word pieces as vocab_size, but ids far past the
            // table: the count check alone let labelling fail in candle.
            "tokenizer ids past vocab_size",
            Box::new(|d, _| {
                let path = d.join("tokenizer.json");
                let mut tokenizer: Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                for id in tokenizer["model"]["vocab"]
                    .as_object_mut()
                    .unwrap()
                    .values_mut()
                {
                    *id = json!(id.as_u64().unwrap() + 4_000_000_000);
                }
                std::fs::write(path, serde_json::to_vec(&tokenizer).unwrap()).unwrap();
            }),
            vec!["tokenizer.json", "has id 4000000", "vocab_size"],
        ),
        (
            "config linked out of the directory",
            link_out("config.json"),
            vec!["config.json", "outside the model directory"],
        ),
        (
            "tokenizer linked out of the directory",
            link_out("tokenizer.json"),
            vec!["tokenizer.json", "outside the model directory"],
        ),
        (
            "weights linked out of the directory",
            link_out("model.safetensors"),
            vec!["model.safetensors", "outside the model directory"],
        ),
        (
            "weights missing",
            Box::new(|d, _| std::fs::remove_file(d.join("model.safetensors")).unwrap()),
            vec!["lacks model.safetensors"],
        ),
        (
            "config a directory",
            Box::new(|d, _| {
                std::fs::remove_file(d.join("config.json")).unwrap();
                std::fs::create_dir(d.join("config.json")).unwrap();
            }),
            vec!["lacks config.json"],
        ),
    ]
}

/// model.safetensors headers that lie about sizes and offsets, and bad values.
fn weights_cases() -> Vec<Case> {
    vec![
        (
            "weights truncated",
            Box::new(|d, _| {
                let path = d.join("model.safetensors");
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
            }),
            vec!["model.safetensors", "not a readable safetensors"],
        ),
        (
            "weights header length of an exabyte",
            write("model.safetensors", safetensors(1 << 60, b"{}", b"")),
            vec!["model.safetensors", "not a readable safetensors"],
        ),
        (
            "weights header past the end",
            write("model.safetensors", safetensors(4096, b"{}", b"")),
            vec!["model.safetensors", "not a readable safetensors"],
        ),
        (
            "weights tensor of a zettabyte",
            write("model.safetensors", {
                let header = br#"{"x":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,16]}}"#;
                safetensors(header.len() as u64, header, &[0; 16])
            }),
            vec!["model.safetensors", "not a readable safetensors"],
        ),
        (
            "weights offsets out of order",
            write("model.safetensors", {
                let header = br#"{"x":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}}"#;
                safetensors(header.len() as u64, header, &[0; 16])
            }),
            vec!["model.safetensors", "not a readable safetensors"],
        ),
        (
            "a NaN weight",
            Box::new(|d, _| poison_first_weight(d, f32::NAN)),
            vec!["model.safetensors", "NaN or infinite"],
        ),
        (
            "an infinite weight",
            Box::new(|d, _| poison_first_weight(d, f32::INFINITY)),
            vec!["model.safetensors", "NaN or infinite"],
        ),
        (
            "weights header length past the end by one",
            Box::new(|d, _| {
                let path = d.join("model.safetensors");
                let mut bytes = std::fs::read(&path).unwrap();
                let past = (bytes.len() - 7) as u64;
                bytes[..8].copy_from_slice(&past.to_le_bytes());
                std::fs::write(path, bytes).unwrap();
            }),
            vec!["model.safetensors", "header length says"],
        ),
        (
            "weights empty",
            write("model.safetensors", Vec::new()),
            vec!["model.safetensors"],
        ),
    ]
}

#[test]
fn hostile_model_directories_get_a_clear_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| -> PathBuf { tmp.path().join(name) };
    simulate(&p("sim"), 12, 5);
    let good = pretrain_tiny(&p("sim/turns"), tmp.path(), Tiny::default());
    let logs = p("sim/turns");

    // The untouched directory loads: the error is the next check's, about
    // the missing supervised heads, so every error below is the mutation's.
    let out = label_with(&good, &logs, &p("good-out"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("without supervised heads"),
        "{}",
        stderr(&out)
    );

    let mut tried = 0;
    for (i, (name, mutate, words)) in cases().into_iter().enumerate() {
        let (dir, outside, out_path) = (
            p(&format!("m{i}")),
            p(&format!("outside{i}")),
            p(&format!("out{i}")),
        );
        copy_dir(&good, &dir);
        std::fs::create_dir_all(&outside).unwrap();
        mutate(&dir, &outside);
        let out = label_with(&dir, &logs, &out_path);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: not a clean error (status {:?}): {err}",
            out.status
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
        for word in words {
            assert!(
                err.contains(word),
                "{name}: the error lacks `{word}`: {err}"
            );
        }
        assert!(!out_path.exists(), "{name}: an output was written");
        tried += 1;
    }
    println!("hostile model directories tried: {tried}");
}

/// A config.json may carry keys labelgen does not know, such as a path to a
/// tokenizer elsewhere; none is followed: config.json has no path fields,
/// and the files read are always DIR/config.json, DIR/tokenizer.json and
/// DIR/model.safetensors. The directory with the extra keys loads exactly
/// as the clean one does.
#[test]
fn paths_in_config_are_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| -> PathBuf { tmp.path().join(name) };
    simulate(&p("sim"), 8, 6);
    let good = pretrain_tiny(&p("sim/turns"), tmp.path(), Tiny::default());
    let dir = p("with-paths");
    copy_dir(&good, &dir);
    edit_config(&dir, |c| {
        c["tokenizer_file"] = json!("/nonexistent/../../etc/passwd");
        c["weights"] = json!("../outside.safetensors");
    });
    let (model, tokenizer) = labelgen::model::checkpoint::load(&dir).unwrap();
    let (clean, clean_tokenizer) = labelgen::model::checkpoint::load(&good).unwrap();
    assert_eq!(model.config, clean.config);
    assert_eq!(
        tokenizer.get_vocab_size(true),
        clean_tokenizer.get_vocab_size(true)
    );
}
