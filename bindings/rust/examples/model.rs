//! One rank of the Rust model check (tests/tp_linear.rs runs it under
//! tppp-run -n 4, TP=2 x PP=2) on a fixture made by transformers
//! (tests/fixtures/make_model_fixtures.py): greedy tokens equal
//! transformers', a prompt's logits match to 1e-4, removal frees a page,
//! and follow mode (only the driver calls) gives the same tokens.
//! Arg: the model directory. No unsafe.
use tppp::{Checkpoint, GenerateOptions, Group, Model, ModelOptions, Sampling};

// The integers of a flat JSON value: "key": 5 or "key": [1, 2, 3].
fn ints(text: &str, key: &str) -> Vec<i64> {
    let at = text.find(&format!("\"{key}\"")).unwrap_or_else(|| panic!("reference.json has no {key}"));
    let value = text[at + key.len() + 2..].trim_start().trim_start_matches(':').trim_start();
    let end = if value.starts_with('[') { value.find(']').unwrap() } else { value.find([',', '}']).unwrap() };
    value[..end].trim_start_matches('[').split(',').map(|v| v.trim().parse().unwrap()).collect()
}

fn lists(text: &str, key: &str) -> Vec<Vec<i32>> {
    let text_at = &text[text.find(&format!("\"{key}\"")).unwrap()..];
    let body = &text_at[text_at.find('[').unwrap() + 1..];
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find('[') {
        let close = rest.find(']').unwrap();
        if close < open { break; }
        out.push(rest[open + 1..close].split(',').filter(|s| !s.trim().is_empty())
                     .map(|s| s.trim().parse().unwrap()).collect());
        rest = &rest[close + 1..];
        if rest.trim_start().starts_with(']') { break; }
    }
    out
}

fn main() -> Result<(), tppp::Error> {
    let dir = std::env::args().nth(1).expect("usage: model MODEL_DIR");
    let text = std::fs::read_to_string(format!("{dir}/reference.json")).expect("reference.json");
    let prompts = lists(&text, "prompts");
    let want = lists(&text, "tokens");
    let vocab = ints(&text, "vocab")[0] as usize;
    let offsets: Vec<usize> = ints(&text, "logits_offsets").iter().map(|&v| v as usize).collect();
    let bytes = std::fs::read(format!("{dir}/logits.bin")).expect("logits.bin");
    let all: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let new_tokens = want[0].len() as i32;

    let g = Group::from_env(2, 2, 60_000)?;
    let rank = g.info()?.rank;
    let c = Checkpoint::open(&dir)?;
    let m = Model::new(&g, &c, &ModelOptions::default())?;
    assert_eq!(m.info()?.vocab_size as usize, vocab);
    let mut seen = Vec::new();
    let mut cb = |p: i32, t: i32| seen.push((p, t));
    let o = GenerateOptions { max_new: new_tokens, ..Default::default() };
    let got = m.generate(&prompts, &o, Some(&mut cb))?;
    let p = &prompts[1];
    let pos: Vec<i32> = (0..p.len() as i32).collect();
    let out = m.forward(p, &pos, &vec![5; p.len()], &vec![true; p.len()])?;
    let free = m.info()?.free_pages;
    m.remove(5)?;
    assert_eq!(m.info()?.free_pages, free + 1);
    if rank == 0 {
        let got = got.expect("the driver gets tokens");
        assert_eq!(got.tokens, want);
        assert_eq!(seen.len(), want.iter().map(|t| t.len()).sum::<usize>());
        let (logits, ids) = out.expect("the driver gets logits");
        let reference = &all[offsets[1]..offsets[1] + p.len() * vocab];
        let num = logits.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let den = reference.iter().map(|b| b.abs()).fold(0f32, f32::max);
        assert!(num / den < 1e-4, "relative error {}", num / den);
        for (r, id) in ids.iter().enumerate() {
            let row = &logits[r * vocab..(r + 1) * vocab];
            let best = (0..vocab).fold(0, |b, c| if row[c] > row[b] { c } else { b });
            assert_eq!(*id as usize, best);
        }
    } else {
        assert!(got.is_none() && out.is_none() && seen.is_empty());
    }
    // Follow mode: only the driver calls.
    let f = Model::new(&g, &c, &ModelOptions { follow: true, ..Default::default() })?;
    if rank == 0 {
        let o = GenerateOptions { max_new: new_tokens, microbatches: 1, prefill_chunk: 3, ..Default::default() };
        assert_eq!(f.generate(&prompts, &o, None)?.expect("driver").tokens, want);
        // Default options are the library's defaults: 16 new tokens.
        let d = f.generate(&prompts, &GenerateOptions::default(), None)?.expect("driver").tokens;
        assert!(d.iter().zip(&want).all(|(a, w)| a.len() == 16 && a[..] == w[..16]), "zero-value options: {d:?}");
        // Steps in flight: prompt 0's prefill and two decode steps give generate's tokens; a seeded draw
        // repeats after seq_rm takes the sequence back to its prompt.
        let q = &prompts[0];
        let n = q.len();
        let pos: Vec<i32> = (0..n as i32).collect();
        let mut wantv = vec![false; n];
        wantv[n - 1] = true;
        f.submit(q, &pos, &vec![9; n], &wantv, None)?;
        let mut toks = f.wait()?.tokens;
        for k in 0..2 {
            f.submit(&[toks[k]], &[(n + k) as i32], &[9], &[true], None)?;
            toks.extend(f.wait()?.tokens);
        }
        assert_eq!(toks, want[0][..3].to_vec());
        let sp = Sampling { temperature: 0.8, top_k: 20, seed: 7, logprobs: true, ..Default::default() };
        let mut draws = Vec::new();
        for _ in 0..2 {
            f.seq_rm(9, n as i32, -1)?;
            f.submit(&[toks[0]], &[n as i32], &[9], &[true], Some(&[Some(sp.clone())]))?;
            let r = f.wait()?;
            assert!(r.logprobs[0] <= 0.0 && r.seq_ids == vec![9]);
            draws.push(r.tokens[0]);
        }
        assert_eq!(draws[0], draws[1]);
        f.remove(9)?;
        f.stop()?;
    } else {
        f.follow(60_000)?;
    }
    println!("OK");
    Ok(())
}
