//! One rank of the 2-rank TP linear check (tests/tp_linear.rs runs it under
//! tppp-run): a COLUMN layer with a gathered output and a ROW layer, each on
//! this rank's shard, against an f64 reference computed here. No unsafe.
use tppp::{Group, LayerKind, Scope};

fn value(seed: u64, i: usize) -> f32 {
    let mut z = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add((i as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z ^= z >> 31;
    ((z % 2000) as f32 / 1000.0) - 1.0 + 0.0005
}

fn main() -> Result<(), tppp::Error> {
    let (m, k, n) = (5usize, 16usize, 12usize);
    let x: Vec<f32> = (0..m * k).map(|i| value(1, i)).collect();
    let w: Vec<f32> = (0..n * k).map(|i| value(2, i)).collect();
    let b: Vec<f32> = (0..n).map(|i| value(3, i)).collect();
    let mut reference = vec![0f64; m * n];
    for r in 0..m {
        for c in 0..n {
            let mut s = b[c] as f64;
            for j in 0..k {
                s += x[r * k + j] as f64 * w[c * k + j] as f64;
            }
            reference[r * n + c] = s;
        }
    }
    let g = Group::from_env(2, 1, 60_000)?;
    let info = g.info()?;
    let (r, tp) = (info.tp_rank as usize, info.tp_size as usize);
    let rel = |y: &[f32]| {
        let (mut e, mut mag) = (0f64, 1e-30f64);
        for (a, b) in y.iter().zip(&reference) {
            e = e.max((*a as f64 - b).abs());
            mag = mag.max(b.abs());
        }
        e / mag
    };
    let rows = n / tp;
    let col = tppp::Layer::linear(&g, LayerKind::Column, k as i64, n as i64, true, true)?;
    col.bind(&w[r * rows * k..(r + 1) * rows * k], rows as i64, k as i64, Some(&b[r * rows..(r + 1) * rows]))?;
    let e1 = rel(&col.forward(&x, m as i64)?);
    let kk = k / tp;
    let w_cols: Vec<f32> = (0..n).flat_map(|c| w[c * k + r * kk..c * k + (r + 1) * kk].to_vec()).collect();
    let x_cols: Vec<f32> = (0..m).flat_map(|i| x[i * k + r * kk..i * k + (r + 1) * kk].to_vec()).collect();
    let row = tppp::Layer::linear(&g, LayerKind::Row, k as i64, n as i64, true, false)?;
    row.bind(&w_cols, n as i64, kk as i64, Some(&b))?;
    let e2 = rel(&row.forward(&x_cols, m as i64)?);
    let s = g.all_reduce_f32(&[1.0, 2.0], Scope::World)?;
    let bad = col.bind(&w, n as i64, k as i64, Some(&b)).is_err();  // not this rank's shard
    let ok = e1 < 1e-5 && e2 < 1e-5 && s == vec![2.0, 4.0] && bad;
    println!("rank {}: column err {e1:.2e}, row err {e2:.2e}: {}", info.rank, if ok { "OK" } else { "FAIL" });
    drop(col);
    drop(row);
    if ok { Ok(()) } else { std::process::exit(1) }
}
