//! What the bytes of a field mean: its machine type ([`FieldType`], derived from the Rust type by
//! `layout_struct!`) and its encoding ([`Encoding`]: unit, epoch, code table, padding), declared on
//! each field with `#[enc(…)]`. Together with the field's doc comment they are the one description
//! of every field that `qilinctl layout --json`, LAYOUT.md's generated tables and the C header use.

/// A primitive of the segment: every field is one of these, an array of one, or a shared struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    /// Unsigned 8-bit.
    U8,
    /// Signed 32-bit, two's complement.
    I32,
    /// Unsigned 32-bit.
    U32,
    /// Signed 64-bit, two's complement.
    I64,
    /// Unsigned 64-bit.
    U64,
    /// IEEE-754 binary64.
    F64,
}

impl Scalar {
    /// Rust spelling (`u8`, `i32`, …), as `qilinctl layout --json` writes it.
    pub const fn name(self) -> &'static str {
        match self {
            Scalar::U8 => "u8",
            Scalar::I32 => "i32",
            Scalar::U32 => "u32",
            Scalar::I64 => "i64",
            Scalar::U64 => "u64",
            Scalar::F64 => "f64",
        }
    }

    /// Size in bytes.
    pub const fn size(self) -> usize {
        match self {
            Scalar::U8 => 1,
            Scalar::I32 | Scalar::U32 => 4,
            Scalar::I64 | Scalar::U64 | Scalar::F64 => 8,
        }
    }
}

/// The machine type of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// One primitive.
    Scalar(Scalar),
    /// `N` primitives in a row (`T[N]`).
    Array(Scalar, usize),
    /// A shared struct, by name.
    Struct(&'static str),
}

impl FieldType {
    /// `u64`, `f64[5]`, `u8[32]`, `TickRecord`.
    pub fn name(self) -> String {
        match self {
            FieldType::Scalar(s) => s.name().to_owned(),
            FieldType::Array(s, n) => format!("{}[{n}]", s.name()),
            FieldType::Struct(name) => name.to_owned(),
        }
    }

    /// The primitive, or the primitive of the array; `None` for a struct.
    pub const fn scalar(self) -> Option<Scalar> {
        match self {
            FieldType::Scalar(s) | FieldType::Array(s, _) => Some(s),
            FieldType::Struct(_) => None,
        }
    }
}

/// The [`FieldType`] of a Rust type used in a shared struct (implemented by `layout_struct!` for
/// each shared struct).
pub trait LayoutType {
    /// Its type.
    const TYPE: FieldType;
}

/// A primitive usable as an array element.
pub trait LayoutScalar {
    /// Its primitive.
    const SCALAR: Scalar;
}

macro_rules! scalars {
    ($($t:ty => $s:ident),*) => {$(
        impl LayoutScalar for $t {
            const SCALAR: Scalar = Scalar::$s;
        }
        impl LayoutType for $t {
            const TYPE: FieldType = FieldType::Scalar(Scalar::$s);
        }
    )*};
}

scalars!(u8 => U8, i32 => I32, u32 => U32, i64 => I64, u64 => U64, f64 => F64);

impl<T: LayoutScalar, const N: usize> LayoutType for [T; N] {
    const TYPE: FieldType = FieldType::Array(T::SCALAR, N);
}

/// How a field's value is to be read: unit, epoch, scale, code table or text padding. Declared on
/// every field of every shared struct (`#[enc(Name)]` in `layout.rs`); [`Encoding::fits`] says
/// which machine types it may describe, and a test holds every field to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Feed sequence number.
    Sequence,
    /// Nanoseconds since the Unix epoch, UTC.
    UtcNs,
    /// A date as the decimal number YYYYMMDD.
    Yyyymmdd,
    /// Milliseconds since midnight, China Standard Time.
    MsOfDayCst,
    /// A 0-based index into the instrument directory.
    DirectoryIndex,
    /// A plain count or number.
    Count,
    /// A size or an offset in bytes.
    Bytes,
    /// A number of contracts, as an integer.
    Lots,
    /// A number of contracts, as a double.
    LotsF64,
    /// A price.
    Price,
    /// An amount of money.
    Money,
    /// A unitless double.
    Real,
    /// Units of the underlying per contract.
    UnitsPerLot,
    /// Bits of the quality table.
    QualityBits,
    /// A code of the exchange table.
    ExchangeCode,
    /// A code of the source table.
    SourceCode,
    /// A code of the run-state table.
    RunStateCode,
    /// A code of the link-state table.
    LinkStateCode,
    /// A code of the bar-period table.
    BarPeriodCode,
    /// Bits of the bar-flags table.
    BarFlags,
    /// NUL-padded ASCII text.
    Ascii,
    /// The segment's magic.
    Magic,
    /// A layout fingerprint.
    Fingerprint,
    /// A ring slot's stamp.
    RingStamp,
    /// A seqlock version.
    SeqlockVersion,
    /// The counter block.
    Counters,
    /// Reserved bytes.
    Reserved,
    /// A nested shared struct.
    Struct,
}

impl Encoding {
    /// Every encoding, in declaration order.
    pub const ALL: [Encoding; 28] = [
        Encoding::Sequence,
        Encoding::UtcNs,
        Encoding::Yyyymmdd,
        Encoding::MsOfDayCst,
        Encoding::DirectoryIndex,
        Encoding::Count,
        Encoding::Bytes,
        Encoding::Lots,
        Encoding::LotsF64,
        Encoding::Price,
        Encoding::Money,
        Encoding::Real,
        Encoding::UnitsPerLot,
        Encoding::QualityBits,
        Encoding::ExchangeCode,
        Encoding::SourceCode,
        Encoding::RunStateCode,
        Encoding::LinkStateCode,
        Encoding::BarPeriodCode,
        Encoding::BarFlags,
        Encoding::Ascii,
        Encoding::Magic,
        Encoding::Fingerprint,
        Encoding::RingStamp,
        Encoding::SeqlockVersion,
        Encoding::Counters,
        Encoding::Reserved,
        Encoding::Struct,
    ];

    /// The token `qilinctl layout --json` writes in a field's `encoding` (stable: readers match on it).
    pub const fn token(self) -> &'static str {
        match self {
            Encoding::Sequence => "sequence",
            Encoding::UtcNs => "utc_ns",
            Encoding::Yyyymmdd => "yyyymmdd",
            Encoding::MsOfDayCst => "ms_of_day_cst",
            Encoding::DirectoryIndex => "directory_index",
            Encoding::Count => "count",
            Encoding::Bytes => "bytes",
            Encoding::Lots => "lots",
            Encoding::LotsF64 => "lots_f64",
            Encoding::Price => "price",
            Encoding::Money => "money",
            Encoding::Real => "real",
            Encoding::UnitsPerLot => "units_per_lot",
            Encoding::QualityBits => "quality_bits",
            Encoding::ExchangeCode => "exchange_code",
            Encoding::SourceCode => "source_code",
            Encoding::RunStateCode => "run_state_code",
            Encoding::LinkStateCode => "link_state_code",
            Encoding::BarPeriodCode => "bar_period_code",
            Encoding::BarFlags => "bar_flags",
            Encoding::Ascii => "ascii_nul_padded",
            Encoding::Magic => "magic",
            Encoding::Fingerprint => "fingerprint",
            Encoding::RingStamp => "ring_stamp",
            Encoding::SeqlockVersion => "seqlock_version",
            Encoding::Counters => "counters",
            Encoding::Reserved => "reserved_zero",
            Encoding::Struct => "struct",
        }
    }

    /// The unit of the value (`None`: a code, text, or a pure number).
    pub const fn unit(self) -> Option<&'static str> {
        match self {
            Encoding::UtcNs => Some("ns"),
            Encoding::Yyyymmdd => Some("day"),
            Encoding::MsOfDayCst => Some("ms"),
            Encoding::Bytes => Some("bytes"),
            Encoding::Lots | Encoding::LotsF64 => Some("lots"),
            Encoding::Price => Some("quote unit"),
            Encoding::Money => Some("CNY"),
            Encoding::UnitsPerLot => Some("units/lot"),
            _ => None,
        }
    }

    /// What a reader in any language needs to turn the bytes into the value.
    pub const fn description(self) -> &'static str {
        match self {
            Encoding::Sequence => {
                "feed sequence number: from 1, gap-free, continuing across core restarts; 0 means none"
            }
            Encoding::UtcNs => {
                "signed nanoseconds since 1970-01-01T00:00:00Z (the Unix epoch, UTC, leap seconds not \
                 counted); 0 means not set"
            }
            Encoding::Yyyymmdd => {
                "a calendar date as the decimal number year × 10000 + month × 100 + day (20260105 is \
                 5 January 2026); 0 means unknown"
            }
            Encoding::MsOfDayCst => {
                "milliseconds since midnight China Standard Time (UTC+8, no daylight saving): \
                 ((hour × 60 + minute) × 60 + second) × 1000 + millisecond, 0 ..= 86 399 999"
            }
            Encoding::DirectoryIndex => "0-based index of a DirectoryEntry (and of its LvcEntry)",
            Encoding::Count => "an unsigned number (a count, an identifier or a version, as its description says)",
            Encoding::Bytes => "a size or a byte offset from the start of the segment or struct",
            Encoding::Lots => "a signed integer number of contracts (lots)",
            Encoding::LotsF64 => {
                "a number of contracts (lots) as an IEEE-754 binary64, as CTP sends it; NaN means absent"
            }
            Encoding::Price => {
                "IEEE-754 binary64 in the instrument's quote unit (yuan per ton, per gram, index points, \
                 ...); NaN means absent (CTP's DBL_MAX)"
            }
            Encoding::Money => "IEEE-754 binary64 amount of money in yuan (CNY); NaN means absent",
            Encoding::Real => "IEEE-754 binary64 without unit; NaN means absent",
            Encoding::UnitsPerLot => "units of the underlying per contract (the multiplier); 0 means unknown",
            Encoding::QualityBits => "a bit set: see the quality table; bits a reader does not know must be ignored",
            Encoding::ExchangeCode => "a code of the exchange table (0: none)",
            Encoding::SourceCode => "a code of the source table (0: none)",
            Encoding::RunStateCode => "a code of the run-state table (0: never started)",
            Encoding::LinkStateCode => "a code of the link-state table",
            Encoding::BarPeriodCode => "a code of the bar-period table (bar segments)",
            Encoding::BarFlags => {
                "a bit set: see the bar-flags table (bar segments); bits a reader does not know must be ignored"
            }
            Encoding::Ascii => {
                "ASCII text, then NUL (0x00) bytes to the end of the field. The writer stores at most \
                 size − 1 text bytes, so at least one NUL always follows the text; a reader still stops \
                 at the end of the field if it finds none"
            }
            Encoding::Magic => {
                "the 8 ASCII bytes \"QILINSHM\" in file order, 0x51 0x49 0x4C 0x49 0x4E 0x53 0x48 0x4D, \
                 no NUL (loaded as one little-endian u64: 0x4d48534e494c4951), in a tick segment; \
                 \"QILINBAR\" (0x51 0x49 0x4C 0x49 0x4E 0x42 0x41 0x52, u64 0x5241424e494c4951) in a \
                 bar segment; all zero while the segment is being created"
            }
            Encoding::Fingerprint => {
                "the layout fingerprint (FNV-1a over every struct's and field's name, offset and size \
                 and the counter names); written as text: 0x and 16 lowercase hex digits"
            }
            Encoding::RingStamp => {
                "seqlock stamp of the slot: 2s − 1 while sequence s is being written, 2s once it is \
                 whole, 0 never written"
            }
            Encoding::SeqlockVersion => "seqlock version: 0 never written, odd being written, even whole",
            Encoding::Counters => "u64 counters indexed by the counter table; indexes the table does not name are zero",
            Encoding::Reserved => "zero; readers ignore it",
            Encoding::Struct => "a shared struct: see its own table",
        }
    }

    /// Whether a field of type `ty` may carry this encoding.
    pub const fn fits(self, ty: FieldType) -> bool {
        use Scalar::*;
        let (scalar, array) = match ty {
            FieldType::Struct(_) => return matches!(self, Encoding::Struct),
            FieldType::Scalar(s) => (s, false),
            FieldType::Array(s, _) => (s, true),
        };
        match self {
            Encoding::Sequence | Encoding::RingStamp | Encoding::SeqlockVersion | Encoding::Fingerprint => {
                matches!(scalar, U64) && !array
            }
            Encoding::UtcNs => matches!(scalar, I64) && !array,
            Encoding::Yyyymmdd | Encoding::MsOfDayCst | Encoding::DirectoryIndex | Encoding::QualityBits => {
                matches!(scalar, U32) && !array
            }
            Encoding::Count | Encoding::Bytes => matches!(scalar, U32 | U64) && !array,
            Encoding::UnitsPerLot | Encoding::LinkStateCode | Encoding::BarFlags => matches!(scalar, U32) && !array,
            Encoding::BarPeriodCode => matches!(scalar, U8) && !array,
            Encoding::Lots => matches!(scalar, I32 | I64),
            Encoding::LotsF64 | Encoding::Money | Encoding::Real => matches!(scalar, F64) && !array,
            Encoding::Price => matches!(scalar, F64),
            Encoding::ExchangeCode => matches!(scalar, U8) && !array,
            Encoding::SourceCode => matches!(scalar, U8 | U32) && !array,
            Encoding::RunStateCode => matches!(scalar, U64) && !array,
            Encoding::Ascii => matches!(scalar, U8) && array,
            Encoding::Magic => matches!(ty, FieldType::Array(U8, 8)),
            Encoding::Counters => matches!(scalar, U64) && array,
            Encoding::Reserved => true,
            Encoding::Struct => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_rust_types() {
        assert_eq!(<u64 as LayoutType>::TYPE.name(), "u64");
        assert_eq!(<[f64; 5] as LayoutType>::TYPE.name(), "f64[5]");
        assert_eq!(<[u8; 32] as LayoutType>::TYPE, FieldType::Array(Scalar::U8, 32));
        assert_eq!(<crate::layout::TickRecord as LayoutType>::TYPE.name(), "TickRecord");
    }

    #[test]
    fn tokens_are_distinct_and_fits_refuses_the_wrong_type() {
        for (i, a) in Encoding::ALL.iter().enumerate() {
            assert!(Encoding::ALL[i + 1..].iter().all(|b| a.token() != b.token()), "{a:?}");
        }
        assert!(Encoding::UtcNs.fits(FieldType::Scalar(Scalar::I64)));
        assert!(!Encoding::UtcNs.fits(FieldType::Scalar(Scalar::U64)), "a signed time");
        assert!(!Encoding::Price.fits(FieldType::Scalar(Scalar::I64)));
        assert!(!Encoding::Lots.fits(FieldType::Scalar(Scalar::F64)));
        assert!(!Encoding::Ascii.fits(FieldType::Scalar(Scalar::U8)));
        assert!(!Encoding::Magic.fits(FieldType::Array(Scalar::U8, 32)));
        assert!(Encoding::Struct.fits(FieldType::Struct("TickRecord")));
        assert!(!Encoding::Count.fits(FieldType::Struct("TickRecord")));
    }
}
