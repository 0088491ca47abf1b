//! How big each multipart part is.

/// S3's smallest part (all but the last).
pub const MIN_PART: u64 = 5 * 1024 * 1024;
/// S3's largest part.
pub const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;
/// S3's most parts per upload.
pub const MAX_PARTS: u64 = 10_000;
/// With an unknown length the part size doubles every this many parts.
pub const PARTS_PER_STEP: u64 = 1_000;

/// The size of part `index` (0-based). With a known length, one size that fits the whole object in 10,000 parts
/// (never below `base`). With an unknown length, `base` doubling every 1,000 parts up to `cap`: with 8 MiB and a
/// 64 MiB cap the 10,000 parts hold 8+16+32 GB + 7,000 x 64 MiB, about 492 GiB (a fixed 8 MiB stops at 78 GiB).
pub fn part_size_for(index: u64, base: u64, cap: u64, known_length: Option<u64>) -> u64 {
    let base = base.clamp(MIN_PART, MAX_PART);
    let cap = cap.clamp(base, MAX_PART);
    match known_length {
        Some(length) => length.div_ceil(MAX_PARTS).next_multiple_of(1024 * 1024).clamp(base, MAX_PART),
        None => base.saturating_mul(1 << (index / PARTS_PER_STEP).min(30)).min(cap),
    }
}

/// The largest object `MAX_PARTS` parts hold with an unknown length.
pub fn capacity(base: u64, cap: u64) -> u64 {
    (0..MAX_PARTS).map(|i| part_size_for(i, base, cap, None)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;

    #[test]
    fn unknown_lengths_grow_on_a_schedule_to_well_past_400_gib() {
        assert_eq!(part_size_for(0, 8 * MIB, 64 * MIB, None), 8 * MIB);
        assert_eq!(part_size_for(999, 8 * MIB, 64 * MIB, None), 8 * MIB);
        assert_eq!(part_size_for(1_000, 8 * MIB, 64 * MIB, None), 16 * MIB);
        assert_eq!(part_size_for(2_500, 8 * MIB, 64 * MIB, None), 32 * MIB);
        assert_eq!(part_size_for(9_999, 8 * MIB, 64 * MIB, None), 64 * MIB);
        assert!(capacity(8 * MIB, 64 * MIB) > 480 * GIB, "{}", capacity(8 * MIB, 64 * MIB) / GIB);
        assert!(capacity(8 * MIB, 8 * MIB) < 80 * GIB, "a fixed 8 MiB part stops near 78 GiB");
    }

    #[test]
    fn known_lengths_fit_in_ten_thousand_parts_and_respect_s3_limits() {
        assert_eq!(part_size_for(0, 8 * MIB, 64 * MIB, Some(GIB)), 8 * MIB);
        let huge = 2_000 * GIB;
        let size = part_size_for(0, 8 * MIB, 64 * MIB, Some(huge));
        assert!(size * MAX_PARTS >= huge && size.is_multiple_of(MIB));
        assert_eq!(part_size_for(0, MIB, MIB, None), MIN_PART, "never below S3's minimum");
    }
}
