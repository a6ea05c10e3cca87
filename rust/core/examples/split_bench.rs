//! Split throughput against the "codec limit", measured in one run on the same files.
//!
//! The codec limit is the CPU cost of `gzip -dc FILES | zstd -3 -T1 >/dev/null`: decompressing
//! the input and compressing it once is the least work any split must do, so a split that costs
//! about as much CPU per item as that pipeline leaves little to gain. Both are timed in CPU
//! seconds (user + system, from /proc), not wall time, because the benchmark machines are
//! shared and noisy; the two are alternated and the best round of each is reported.
//!
//!     cargo run --release --example split_bench -- [--rounds N] [--identity | --three]
//!         [--none OUT] [--no-codec] FILE...
//!
//! By default two targets: posts (renaming an attribute and adding one) and the rest
//! unchanged. `--identity`: both targets write items unchanged (the whole-line copy). `--three`:
//! the three-table split of bench/split_setup.py. `--none OUT`: instead of timing,
//! split once uncompressed and write every shard's bytes to OUT, for comparing outputs between
//! versions. `--no-codec`: time the split only (for comparing two builds in turns).

use std::time::Instant;

use ddbshard_core::output::shard::Codec;
use ddbshard_core::parse_value;
use ddbshard_core::route::expr::Condition;
use ddbshard_core::route::target::Target;
use ddbshard_core::route::transform::{Template, Transform};
use ddbshard_core::split::{Route, Splitter, Unmatched};
use ddbshard_core::TypeTag;

const CHUNK: usize = 4 << 20; // what the Python driver feeds per call

/// (user + system) CPU seconds of this process, and of its waited-for children.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<f64> = rest.split(' ').map(|x| x.parse().unwrap_or(0.0)).collect();
    // utime, stime, cutime, cstime are fields 14..17 (1-based), i.e. 11..14 of `rest`.
    let tick = 100.0; // USER_HZ on Linux
    ((f[11] + f[12]) / tick, (f[13] + f[14]) / tick)
}

/// Which split to run.
#[derive(Clone, Copy, PartialEq)]
enum Config {
    /// Two targets, 8 shards each: posts (renamed attribute, templated one), everything else
    /// unchanged.
    Two,
    /// The same two targets, both writing items unchanged (the whole-line copy).
    Identity,
    /// The three-table split of bench/split_setup.py (4 shards each, unmatched dropped).
    Three,
}

fn value(text: &str) -> ddbshard_core::Value<'static> {
    parse_value(text).unwrap().into_owned()
}

fn target(
    name: &str,
    condition: Option<Condition>,
    transform: Transform,
    hash: &str,
    range: Option<&str>,
    shards: usize,
) -> Target {
    Target {
        name: name.into(),
        condition,
        transform,
        hash_key: (hash.into(), TypeTag::S),
        range_key: range.map(|r| (r.into(), TypeTag::S)),
        index_keys: vec![],
        shards,
    }
}

fn targets(config: Config) -> Vec<Target> {
    let is = |v: &str| {
        Some(
            Condition::parse(
                "kind = :v",
                &[],
                &[(":v".into(), value(&format!(r#"{{"S":"{v}"}}"#)))],
            )
            .unwrap(),
        )
    };
    let posts = |drop: &[&str]| Transform {
        drop: drop.iter().map(|d| d.to_string()).collect(),
        rename: vec![("created_at".into(), "createdAt".into())],
        set: vec![(
            "gsi1pk".into(),
            Template::parse("USER#{user_id}", &[]).unwrap(),
        )],
        ..Transform::default()
    };
    match config {
        Config::Two | Config::Identity => {
            let transform = if config == Config::Two {
                posts(&[])
            } else {
                Transform::default()
            };
            vec![
                target("Posts", is("post"), transform, "pk", Some("sk"), 8),
                target("Rest", None, Transform::default(), "pk", Some("sk"), 8),
            ]
        }
        Config::Three => {
            let names = [("#ts".to_owned(), "created_at".to_owned())];
            let post = [(":post".to_owned(), value(r#"{"S":"post"}"#))];
            let posts_where =
                Condition::parse("kind = :post AND attribute_exists(#ts)", &names, &post).unwrap();
            let profiles = Transform {
                drop: vec!["legacy".into(), "sk".into()],
                ..Transform::default()
            };
            vec![
                target(
                    "Posts",
                    Some(posts_where),
                    posts(&["legacy"]),
                    "pk",
                    Some("sk"),
                    4,
                ),
                target("Profiles", is("profile"), profiles, "user_id", None, 4),
                target(
                    "Comments",
                    is("comment"),
                    Transform::default(),
                    "pk",
                    Some("sk"),
                    4,
                ),
            ]
        }
    }
}

/// Splits every file; returns (items read, bytes of output).
fn split(
    files: &[(String, Vec<u8>)],
    config: Config,
    codec: Codec,
    out: &mut impl FnMut(&[u8]),
) -> (u64, u64) {
    let unmatched = if config == Config::Three {
        Unmatched::Drop
    } else {
        Unmatched::Reject
    };
    let mut s = Splitter::new(targets(config), Route::First, unmatched, codec, 3).unwrap();
    let mut bytes = 0u64;
    for (name, data) in files {
        s.begin_file(name);
        for chunk in data.chunks(CHUNK) {
            s.feed(chunk).unwrap();
            s.drain_shards(|_, _, b| {
                bytes += b.len() as u64;
                out(b)
            });
        }
        s.end_file().unwrap();
        s.drain_shards(|_, _, b| {
            bytes += b.len() as u64;
            out(b)
        });
    }
    let c = s.counts();
    assert_eq!(c.read, c.written + c.unmatched + c.rejected);
    (c.read, bytes)
}

fn codec_limit(paths: &[String]) -> f64 {
    let (_, before) = cpu_seconds();
    let cmd = format!(
        "gzip -dc {} | zstd -3 -T1 -q -c >/dev/null",
        paths.join(" ")
    );
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .unwrap();
    assert!(st.success());
    let (_, after) = cpu_seconds();
    after - before
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut rounds = 3;
    let mut config = Config::Two;
    let mut dump: Option<String> = None;
    let mut with_codec = true;
    let mut paths = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().unwrap().parse().unwrap(),
            "--identity" => config = Config::Identity,
            "--three" => config = Config::Three,
            "--none" => dump = args.next(),
            "--no-codec" => with_codec = false,
            _ => paths.push(a),
        }
    }
    let files: Vec<(String, Vec<u8>)> = paths
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    if let Some(out) = dump {
        let mut all = Vec::new();
        split(&files, config, Codec::None, &mut |b| {
            all.extend_from_slice(b)
        });
        std::fs::write(out, all).unwrap();
        return;
    }
    let (mut best_split, mut best_codec) = (f64::MAX, f64::MAX);
    let mut items = 0;
    for round in 0..rounds {
        let (c0, _) = cpu_seconds();
        let t0 = Instant::now();
        let (n, out_bytes) = split(&files, config, Codec::Zstd, &mut |_| {});
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds().0 - c0;
        let codec = if with_codec {
            codec_limit(&paths)
        } else {
            f64::NAN
        };
        items = n;
        best_split = best_split.min(cpu);
        best_codec = best_codec.min(codec);
        println!(
            "round {round}: split {n} items {cpu:.2} cpu-s ({wall:.2} wall-s, {:.0} items/cpu-s, {out_bytes} bytes out); codec limit {codec:.2} cpu-s ({:.0} items/cpu-s); ratio {:.2}",
            n as f64 / cpu,
            n as f64 / codec,
            codec / cpu
        );
    }
    println!(
        "best: split {:.0} items/cpu-s, codec limit {:.0} items/cpu-s, ratio {:.2}",
        items as f64 / best_split,
        items as f64 / best_codec,
        best_codec / best_split
    );
}
