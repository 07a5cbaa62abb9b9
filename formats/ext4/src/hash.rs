//! Directory-index hashes (legacy, half-MD4, TEA, each signed or unsigned
//! per the superblock flag), as the kernel computes them for htree lookups.

/// `dx_root_info.hash_version` values (the unsigned variants add 3).
pub mod version {
    /// Legacy "dx hack" hash.
    pub const LEGACY: u8 = 0;
    /// Half MD4 (the default).
    pub const HALF_MD4: u8 = 1;
    /// TEA.
    pub const TEA: u8 = 2;
}

fn ch(b: u8, signed: bool) -> u32 {
    if signed {
        i32::from(b as i8) as u32
    } else {
        u32::from(b)
    }
}

fn dx_hack(name: &[u8], signed: bool) -> u32 {
    let (mut h0, mut h1): (u32, u32) = (0x12a3_fe2d, 0x37ab_e8f9);
    for &c in name {
        let mut h = h1.wrapping_add(h0 ^ ch(c, signed).wrapping_mul(7_152_373));
        if h & 0x8000_0000 != 0 {
            h = h.wrapping_sub(0x7fff_ffff);
        }
        h1 = h0;
        h0 = h;
    }
    h0 << 1
}

fn str2hashbuf(msg: &[u8], num: usize, signed: bool) -> [u32; 8] {
    let mut out = [0u32; 8];
    let len = msg.len() as u32;
    let mut pad = len | (len << 8);
    pad |= pad << 16;
    let mut val = pad;
    let n = msg.len().min(num * 4);
    let mut k = 0;
    for (i, &c) in msg[..n].iter().enumerate() {
        val = ch(c, signed).wrapping_add(val << 8);
        if i % 4 == 3 {
            out[k] = val;
            k += 1;
            val = pad;
        }
    }
    if k < num {
        out[k] = val;
        k += 1;
    }
    while k < num {
        out[k] = pad;
        k += 1;
    }
    out
}

fn half_md4(buf: &mut [u32; 4], i: &[u32; 8]) {
    let (mut a, mut b, mut c, mut d) = (buf[0], buf[1], buf[2], buf[3]);
    let f = |x: u32, y: u32, z: u32| z ^ (x & (y ^ z));
    let g = |x: u32, y: u32, z: u32| (x & y).wrapping_add((x ^ y) & z);
    let h = |x: u32, y: u32, z: u32| x ^ y ^ z;
    macro_rules! round {
        ($f:expr, $a:ident, $b:ident, $c:ident, $d:ident, $x:expr, $s:expr) => {
            $a = $a
                .wrapping_add($f($b, $c, $d))
                .wrapping_add($x)
                .rotate_left($s);
        };
    }
    const K2: u32 = 0o13240474631;
    const K3: u32 = 0o15666365641;
    round!(f, a, b, c, d, i[0], 3);
    round!(f, d, a, b, c, i[1], 7);
    round!(f, c, d, a, b, i[2], 11);
    round!(f, b, c, d, a, i[3], 19);
    round!(f, a, b, c, d, i[4], 3);
    round!(f, d, a, b, c, i[5], 7);
    round!(f, c, d, a, b, i[6], 11);
    round!(f, b, c, d, a, i[7], 19);
    round!(g, a, b, c, d, i[1].wrapping_add(K2), 3);
    round!(g, d, a, b, c, i[3].wrapping_add(K2), 5);
    round!(g, c, d, a, b, i[5].wrapping_add(K2), 9);
    round!(g, b, c, d, a, i[7].wrapping_add(K2), 13);
    round!(g, a, b, c, d, i[0].wrapping_add(K2), 3);
    round!(g, d, a, b, c, i[2].wrapping_add(K2), 5);
    round!(g, c, d, a, b, i[4].wrapping_add(K2), 9);
    round!(g, b, c, d, a, i[6].wrapping_add(K2), 13);
    round!(h, a, b, c, d, i[3].wrapping_add(K3), 3);
    round!(h, d, a, b, c, i[7].wrapping_add(K3), 9);
    round!(h, c, d, a, b, i[2].wrapping_add(K3), 11);
    round!(h, b, c, d, a, i[6].wrapping_add(K3), 15);
    round!(h, a, b, c, d, i[1].wrapping_add(K3), 3);
    round!(h, d, a, b, c, i[5].wrapping_add(K3), 9);
    round!(h, c, d, a, b, i[0].wrapping_add(K3), 11);
    round!(h, b, c, d, a, i[4].wrapping_add(K3), 15);
    buf[0] = buf[0].wrapping_add(a);
    buf[1] = buf[1].wrapping_add(b);
    buf[2] = buf[2].wrapping_add(c);
    buf[3] = buf[3].wrapping_add(d);
}

fn tea(buf: &mut [u32; 4], i: &[u32; 8]) {
    let mut sum: u32 = 0;
    let (mut b0, mut b1) = (buf[0], buf[1]);
    let (a, b, c, d) = (i[0], i[1], i[2], i[3]);
    for _ in 0..16 {
        sum = sum.wrapping_add(0x9E37_79B9);
        b0 = b0.wrapping_add(
            (b1 << 4).wrapping_add(a) ^ b1.wrapping_add(sum) ^ (b1 >> 5).wrapping_add(b),
        );
        b1 = b1.wrapping_add(
            (b0 << 4).wrapping_add(c) ^ b0.wrapping_add(sum) ^ (b0 >> 5).wrapping_add(d),
        );
    }
    buf[0] = buf[0].wrapping_add(b0);
    buf[1] = buf[1].wrapping_add(b1);
}

/// The (major, minor) hash of `name`; `None` for an unknown version.
pub fn dirhash(
    name: &[u8],
    hash_version: u8,
    unsigned: bool,
    seed: [u32; 4],
) -> Option<(u32, u32)> {
    let mut buf = [0x6745_2301u32, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    if seed.iter().any(|&s| s != 0) {
        buf = seed;
    }
    let signed = !unsigned;
    let (hash, minor) = match hash_version {
        version::LEGACY => (dx_hack(name, signed), 0),
        version::HALF_MD4 => {
            let mut p = name;
            loop {
                let input = str2hashbuf(p, 8, signed);
                half_md4(&mut buf, &input);
                if p.len() <= 32 {
                    break;
                }
                p = &p[32..];
            }
            (buf[1], buf[2])
        }
        version::TEA => {
            let mut p = name;
            loop {
                let input = str2hashbuf(p, 4, signed);
                tea(&mut buf, &input);
                if p.len() <= 16 {
                    break;
                }
                p = &p[16..];
            }
            (buf[0], buf[1])
        }
        _ => return None,
    };
    let mut hash = hash & !1;
    if hash == 0x7fff_ffff << 1 {
        hash = (0x7fff_ffff - 1) << 1;
    }
    Some((hash, minor))
}
