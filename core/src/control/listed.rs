//! Which instruments `subscribe` may add to the directory. The directory lives as long as the
//! segment (across core restarts) and its places are few, so a client must not be able to fill it
//! with ids that merely look like contracts. Listed are:
//! - the futures named in the instruments file (each product's `instruments`) and in
//!   `core.subscribe`;
//! - options whose underlying future is listed (`m2605-C-3000` when `m2605` is), at most
//!   [`Listed::option_budget`] of them over the control socket per core run (a quarter of the
//!   directory), since their strikes cannot be listed in advance.
//!
//! Anything else is refused with the id and the reason; an instrument already in the directory is
//! always accepted (subscribing it again changes no place). To subscribe a new contract month, list
//! it in the instruments file or `core.subscribe` and restart the core.

use std::{collections::HashSet, path::PathBuf};

use qilin_market::{
    Instruments,
    products::{Kind, product_of},
};

/// The instruments `subscribe` may add (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct Listed {
    futures: HashSet<String>,
    products: Option<Instruments>,
    option_budget: usize,
}

/// What [`Listed::judge`] says of an id not yet in the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A listed future.
    Listed,
    /// An option of a listed future: admitted within [`Listed::option_budget`].
    OptionOfListed,
    /// Refused, with the reply's error text (it names the id).
    Refused(String),
}

impl Listed {
    /// Nothing listed: `subscribe` adds nothing new to the directory.
    pub fn none() -> Listed {
        Listed::default()
    }

    /// The futures of `products` (the instruments file) and of `subscribe` (`core.subscribe`);
    /// options of those within a quarter of `capacity` (the directory's).
    pub fn new(products: &Instruments, subscribe: &[String], capacity: u32) -> Listed {
        let futures = products
            .products()
            .iter()
            .flat_map(|p| p.instruments.iter().cloned())
            .chain(subscribe.iter().cloned())
            .collect();
        Listed { futures, products: Some(products.clone()), option_budget: capacity as usize / 4 }
    }

    /// How many options of listed futures `subscribe` may add in one core run.
    pub fn option_budget(&self) -> usize {
        self.option_budget
    }

    /// Whether `subscribe id` may add `id` (an id not in the directory) to the directory.
    pub fn judge(&self, id: &str) -> Verdict {
        if self.futures.contains(id) {
            return Verdict::Listed;
        }
        let file = || self.products.as_ref().map_or_else(PathBuf::new, |p| p.path().to_owned());
        let Some(spec) = self.products.as_ref().and_then(|p| p.spec_for(id)) else {
            return Verdict::Refused(format!(
                "{id} is not listed: unknown product (not in the instruments file {}); not admitted",
                file().display()
            ));
        };
        match (&spec.kind, &spec.underlying) {
            (Kind::Option { .. }, Some(underlying)) => {
                let rest = &id[product_of(id).len()..];
                let month = &rest[..rest.bytes().take_while(u8::is_ascii_digit).count()];
                let future = format!("{underlying}{month}");
                if self.futures.contains(&future) {
                    Verdict::OptionOfListed
                } else {
                    Verdict::Refused(format!(
                        "{id} is not listed: its underlying {future} is not among the instruments of product {underlying} \
                         in {} nor in core.subscribe; not admitted",
                        file().display()
                    ))
                }
            }
            _ => Verdict::Refused(format!(
                "{id} is not listed: not among the instruments of product {} in {} nor in core.subscribe \
                 (list it there and restart the core); not admitted",
                spec.code,
                file().display()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn listed() -> Listed {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml");
        Listed::new(&Instruments::load(&file).unwrap(), &["rb2612".to_owned()], 64)
    }

    #[test]
    fn listed_futures_and_options_of_them_pass_and_nothing_else() {
        let listed = listed();
        assert_eq!(listed.option_budget(), 16);
        for id in ["rb2605", "cu2604", "rb2612"] {
            assert_eq!(listed.judge(id), Verdict::Listed, "{id}");
        }
        for id in ["rb2605C3000", "m2605-C-3000"] {
            assert_eq!(listed.judge(id), Verdict::OptionOfListed, "{id}");
        }
        for (id, why) in [
            ("rb0000", "not among the instruments of product rb"),
            ("rb9999", "not among the instruments of product rb"),
            ("rb2699C3000", "its underlying rb2699 is not among"),
            ("zz9999", "unknown product"),
            ("rb26055", "unknown product"),
        ] {
            match listed.judge(id) {
                Verdict::Refused(error) => {
                    assert!(error.starts_with(&format!("{id} is not listed: ")) && error.contains(why), "{error}")
                }
                other => panic!("{id}: {other:?}"),
            }
        }
        assert!(matches!(Listed::none().judge("rb2605"), Verdict::Refused(_)));
    }
}
