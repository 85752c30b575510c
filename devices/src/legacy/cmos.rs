//! CMOS RTC (MC146818) at ports 0x70/0x71: the guest reads its wall-clock time
//! here at boot (`read_persistent_clock64`) and through rtc_cmos.
//!
//! Time registers are computed from the host's clock on every read, in BCD and
//! 24-hour mode: x86 Linux assumes BCD for the boot-time read (RTC_ALWAYS_BCD).
//! A guest that sets the clock moves an offset, as on real hardware the clock
//! then keeps running from the new value. The other 114 bytes are NVRAM.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::BusDeviceMut;

const INDEX_MASK: u8 = 0x7f;
const SECONDS: usize = 0x00;
const MINUTES: usize = 0x02;
const HOURS: usize = 0x04;
const WEEKDAY: usize = 0x06;
const DAY: usize = 0x07;
const MONTH: usize = 0x08;
const YEAR: usize = 0x09;
const STATUS_A: usize = 0x0a;
const STATUS_B: usize = 0x0b;
const STATUS_C: usize = 0x0c;
const STATUS_D: usize = 0x0d;
/// Century register; the FADT's CENTURY field names it.
pub const CENTURY: usize = 0x32;

/// Status B: 24-hour mode, BCD (DM = 0), no interrupts enabled.
const STATUS_B_24H: u8 = 0x02;
/// Status A: 32.768 kHz time base, 1024 Hz rate; UIP (bit 7) always clear
/// because every read sees a consistent snapshot.
const STATUS_A_DEFAULT: u8 = 0x26;
/// Status D: valid RAM and time.
const STATUS_D_VRT: u8 = 0x80;

pub struct Cmos {
    index: u8,
    nvram: [u8; 128],
    /// Seconds added to the host clock (changed when the guest sets the time).
    offset_secs: i64,
    now: fn() -> i64,
}

fn host_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn bcd(v: u32) -> u8 {
    (((v / 10) << 4) | (v % 10)) as u8
}

fn from_bcd(v: u8) -> u32 {
    u32::from(v >> 4) * 10 + u32::from(v & 0xf)
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a civil date (inverse of `civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Default for Cmos {
    fn default() -> Self {
        Self::new()
    }
}

impl Cmos {
    pub fn new() -> Self {
        Self::with_clock(host_now)
    }

    /// A CMOS whose clock reads `now()` (seconds since the epoch); for tests.
    pub fn with_clock(now: fn() -> i64) -> Self {
        let mut nvram = [0u8; 128];
        nvram[STATUS_A] = STATUS_A_DEFAULT;
        nvram[STATUS_B] = STATUS_B_24H;
        nvram[STATUS_D] = STATUS_D_VRT;
        Self {
            index: 0,
            nvram,
            offset_secs: 0,
            now,
        }
    }

    fn guest_time(&self) -> i64 {
        (self.now)() + self.offset_secs
    }

    fn read_reg(&self, reg: usize) -> u8 {
        let t = self.guest_time();
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400) as u32;
        let (y, mo, d) = civil_from_days(days);
        match reg {
            SECONDS => bcd(secs % 60),
            MINUTES => bcd(secs / 60 % 60),
            HOURS => bcd(secs / 3600),
            // 1 = Sunday; 1970-01-01 was a Thursday.
            WEEKDAY => bcd(((days + 4).rem_euclid(7) + 1) as u32),
            DAY => bcd(d),
            MONTH => bcd(mo),
            YEAR => bcd(y.rem_euclid(100) as u32),
            CENTURY => bcd(y.div_euclid(100).clamp(0, 99) as u32),
            STATUS_C => 0,
            _ => self.nvram[reg],
        }
    }

    fn write_reg(&mut self, reg: usize, value: u8) {
        match reg {
            SECONDS | MINUTES | HOURS | DAY | MONTH | YEAR | CENTURY => {
                // Re-derive the offset so the clock reads the new field value.
                let t = self.guest_time();
                let days = t.div_euclid(86_400);
                let secs = t.rem_euclid(86_400);
                let (y, mo, d) = civil_from_days(days);
                let (mut h, mut mi, mut s) = (secs / 3600, secs / 60 % 60, secs % 60);
                let (mut y, mut mo, mut d) = (y, mo, d);
                let v = from_bcd(value);
                match reg {
                    SECONDS => s = i64::from(v.min(59)),
                    MINUTES => mi = i64::from(v.min(59)),
                    HOURS => h = i64::from(v.min(23)),
                    DAY => d = v.clamp(1, 31),
                    MONTH => mo = v.clamp(1, 12),
                    YEAR => y = y.div_euclid(100) * 100 + i64::from(v.min(99)),
                    _ => y = i64::from(v.min(99)) * 100 + y.rem_euclid(100),
                }
                let new_t = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
                self.offset_secs += new_t - t;
            }
            // Only the rate bits of A are writable; UIP is read-only.
            STATUS_A => self.nvram[STATUS_A] = value & 0x7f,
            // Keep BCD/24h: the time registers are always presented that way.
            STATUS_B => self.nvram[STATUS_B] = (value & !0x06) | STATUS_B_24H,
            STATUS_C | STATUS_D | WEEKDAY => {}
            _ => self.nvram[reg] = value,
        }
    }
}

impl BusDeviceMut for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some(first) = data.first_mut() else {
            return;
        };
        *first = match offset {
            0 => self.index,
            1 => self.read_reg(usize::from(self.index & INDEX_MASK)),
            _ => 0xff,
        };
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            // Bit 7 of the index port is the NMI mask; not modelled.
            0 => self.index = v & INDEX_MASK,
            1 => self.write_reg(usize::from(self.index & INDEX_MASK), v),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(c: &mut Cmos, reg: u8) -> u8 {
        c.write(0, &[reg]);
        let mut b = [0u8];
        c.read(1, &mut b);
        b[0]
    }

    // 2026-11-22 14:47:53 UTC, a Sunday.
    fn fixed() -> i64 {
        1_795_358_873
    }

    #[test]
    fn zero_width_reads_are_ignored() {
        let mut c = Cmos::new();
        c.read(1, &mut []);
        c.read(0, &mut []);
    }

    #[test]
    fn reads_time_in_bcd() {
        let mut c = Cmos::with_clock(fixed);
        assert_eq!(rd(&mut c, 0x00), 0x53);
        assert_eq!(rd(&mut c, 0x02), 0x47);
        assert_eq!(rd(&mut c, 0x04), 0x14);
        assert_eq!(rd(&mut c, 0x07), 0x22);
        assert_eq!(rd(&mut c, 0x08), 0x11);
        assert_eq!(rd(&mut c, 0x09), 0x26);
        assert_eq!(rd(&mut c, 0x32), 0x20);
        assert_eq!(rd(&mut c, 0x06), 0x01, "Sunday");
        assert_eq!(rd(&mut c, 0x0b) & 0x06, 0x02, "BCD, 24h");
        assert_eq!(rd(&mut c, 0x0a) & 0x80, 0, "UIP clear");
    }

    #[test]
    fn civil_round_trip() {
        for days in [-1_000_000i64, -1, 0, 59, 365, 11_016, 20_414, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn setting_year_moves_the_clock() {
        let mut c = Cmos::with_clock(fixed);
        c.write(0, &[0x09]);
        c.write(1, &[0x30]);
        assert_eq!(rd(&mut c, 0x09), 0x30);
        assert_eq!(rd(&mut c, 0x08), 0x11);
        assert_eq!(rd(&mut c, 0x00), 0x53);
        // NVRAM bytes store and read back.
        c.write(0, &[0x40]);
        c.write(1, &[0xab]);
        assert_eq!(rd(&mut c, 0x40), 0xab);
    }
}
