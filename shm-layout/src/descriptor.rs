//! Layout written as code: every shared struct is declared through `layout_struct!`, which emits the
//! `#[repr(C)]` zerocopy struct *and* a table of its fields: name, offset, size, machine type (from
//! the Rust type), encoding (the field's `#[enc(…)]`) and description (its doc comment).
//!
//! The tables serve these purposes:
//! - a compile-time proof that the fields tile the struct exactly (no hidden padding, none missing);
//! - the layout **fingerprint**, an FNV-1a hash over every struct's name, size and fields, which a
//!   reader compares with the segment header so code built against another layout refuses to read;
//! - the field list that `qilinctl layout` prints for authors of readers in other languages, with each
//!   field's type, unit and encoding (`--json`, LAYOUT.md's generated tables) and the C header's types.

use crate::encoding::{Encoding, FieldType};

/// One field of a shared struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldDesc {
    /// Field name as written in Rust (and in the C header).
    pub name: &'static str,
    /// Byte offset from the start of the struct.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// Machine type, from the Rust type (not part of the fingerprint: the size is).
    pub ty: FieldType,
    /// How to read the value (the field's `#[enc(…)]`).
    pub encoding: Encoding,
    /// The field's doc comment, one line per `///` line.
    pub doc: &'static str,
}

impl FieldDesc {
    /// The doc comment as one line of plain text (Rust's inline-code backticks kept).
    pub fn description(&self) -> String {
        doc_text(self.doc)
    }
}

/// A doc comment captured by a macro (one line per `///` line) as one line of text.
pub fn doc_text(doc: &str) -> String {
    doc.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// One shared struct: its name, size and fields in declaration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StructDesc {
    /// Struct name.
    pub name: &'static str,
    /// `size_of` the struct.
    pub size: usize,
    /// Its fields, in order.
    pub fields: &'static [FieldDesc],
}

/// True when `fields` are in increasing offset order, do not overlap, leave no gap and end exactly at
/// `size`. Evaluated at compile time for every struct declared with `layout_struct!`.
pub const fn fields_tile(fields: &[FieldDesc], size: usize) -> bool {
    let mut end = 0;
    let mut i = 0;
    while i < fields.len() {
        if fields[i].offset != end {
            return false;
        }
        end += fields[i].size;
        i += 1;
    }
    end == size
}

/// True when every field's encoding fits its machine type ([`Encoding::fits`]); evaluated at compile
/// time for every struct declared with `layout_struct!`.
pub const fn encodings_fit(fields: &[FieldDesc]) -> bool {
    let mut i = 0;
    while i < fields.len() {
        if !fields[i].encoding.fits(fields[i].ty) {
            return false;
        }
        i += 1;
    }
    true
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

const fn fnv_bytes(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    // Terminate each item so ("ab","c") and ("a","bc") hash differently.
    hash ^= 0xff;
    hash.wrapping_mul(FNV_PRIME)
}

const fn fnv_usize(hash: u64, value: usize) -> u64 {
    fnv_bytes(hash, &(value as u64).to_le_bytes())
}

/// FNV-1a over every struct's name and size and every field's name, offset and size, plus any extra
/// named constants that are part of the contract (`extra`: e.g. counter names in index order).
pub const fn fingerprint(structs: &[StructDesc], extra: &[&str]) -> u64 {
    let mut hash = FNV_OFFSET;
    let mut s = 0;
    while s < structs.len() {
        hash = fnv_bytes(hash, structs[s].name.as_bytes());
        hash = fnv_usize(hash, structs[s].size);
        let mut f = 0;
        while f < structs[s].fields.len() {
            let field = structs[s].fields[f];
            hash = fnv_bytes(hash, field.name.as_bytes());
            hash = fnv_usize(hash, field.offset);
            hash = fnv_usize(hash, field.size);
            f += 1;
        }
        s += 1;
    }
    let mut e = 0;
    while e < extra.len() {
        hash = fnv_bytes(hash, extra[e].as_bytes());
        e += 1;
    }
    hash
}

/// Declares a shared `#[repr(C)]` struct with zerocopy derives and its field table `Self::DESC`, and
/// asserts at compile time that the fields tile the struct (so it has no padding bytes) and that each
/// field's encoding fits its type. Every field has a doc comment and exactly one `#[enc(Encoding)]`
/// (the macro does not accept a field without), so every field is described exactly once.
macro_rules! layout_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[doc = $doc:literal])+ #[enc($enc:ident)] pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(
            Clone, Copy, Debug, PartialEq,
            zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable,
        )]
        pub struct $name {
            $( $(#[doc = $doc])+ pub $field: $ty, )*
        }

        impl $crate::encoding::LayoutType for $name {
            const TYPE: $crate::encoding::FieldType = $crate::encoding::FieldType::Struct(stringify!($name));
        }

        impl $name {
            /// This struct's name, size and field table (part of the layout fingerprint).
            pub const DESC: $crate::descriptor::StructDesc = $crate::descriptor::StructDesc {
                name: stringify!($name),
                size: core::mem::size_of::<$name>(),
                fields: &[
                    $( $crate::descriptor::FieldDesc {
                        name: stringify!($field),
                        offset: core::mem::offset_of!($name, $field),
                        size: core::mem::size_of::<$ty>(),
                        ty: <$ty as $crate::encoding::LayoutType>::TYPE,
                        encoding: $crate::encoding::Encoding::$enc,
                        doc: concat!($($doc, "\n"),+),
                    }, )*
                ],
            };
        }

        const _: () = assert!(
            $crate::descriptor::fields_tile($name::DESC.fields, core::mem::size_of::<$name>()),
            concat!(stringify!($name), ": fields must tile the struct with no padding"),
        );
        const _: () = assert!(
            $crate::descriptor::encodings_fit($name::DESC.fields),
            concat!(stringify!($name), ": a field's #[enc] does not fit its type (Encoding::fits)"),
        );
    };
}

pub(crate) use layout_struct;

#[cfg(test)]
mod tests {
    use super::*;

    use crate::encoding::Scalar;

    const A: FieldDesc = FieldDesc {
        name: "a",
        offset: 0,
        size: 8,
        ty: FieldType::Scalar(Scalar::U64),
        encoding: Encoding::Count,
        doc: "",
    };
    const B: FieldDesc = FieldDesc {
        name: "b",
        offset: 8,
        size: 4,
        ty: FieldType::Scalar(Scalar::U32),
        encoding: Encoding::Count,
        doc: "",
    };

    #[test]
    fn tiling_rejects_gaps_overlaps_and_short_tables() {
        assert!(fields_tile(&[A, B], 12));
        assert!(!fields_tile(&[A, B], 16), "trailing gap");
        assert!(!fields_tile(&[A, FieldDesc { offset: 12, ..B }], 16), "hole");
        assert!(!fields_tile(&[A, FieldDesc { offset: 4, ..B }], 12), "overlap");
        assert!(!fields_tile(&[B, A], 12), "order");
    }

    #[test]
    fn fingerprint_changes_with_any_offset_size_or_name() {
        let base = [StructDesc { name: "S", size: 12, fields: &[A, B] }];
        let fp = fingerprint(&base, &[]);
        let moved = [StructDesc { name: "S", size: 12, fields: &[A, FieldDesc { offset: 9, ..B }] }];
        let resized = [StructDesc { name: "S", size: 12, fields: &[A, FieldDesc { size: 5, ..B }] }];
        let renamed = [StructDesc { name: "S", size: 12, fields: &[A, FieldDesc { name: "c", ..B }] }];
        assert_ne!(fp, fingerprint(&moved, &[]));
        assert_ne!(fp, fingerprint(&resized, &[]));
        assert_ne!(fp, fingerprint(&renamed, &[]));
        assert_ne!(fp, fingerprint(&base, &["counter"]));
        assert_eq!(fp, fingerprint(&base, &[]));
    }
}
