//! The product table written back as TOML in the canonical form of `config/instruments.toml`: one
//! `[[product]]` per future with its name as a trailing comment, the keys in the file's order,
//! the option series inline, a section comment per exchange. What [`render`] writes loads back
//! (`Instruments::from_toml_str`) to an equal table. `qilinctl products import` writes with it.

use std::fmt::Write as _;

use super::{IdForm, Instruments, Kind, ProductSpec, Segment};

/// The table as TOML, with a header comment naming the file it was read from.
pub fn render(instruments: &Instruments) -> String {
    let header = format!(
        "Product table rendered from {} by qilin_market::products::render.\n\
         Format: the header of config/instruments.toml and docs/PRODUCTS.md.",
        instruments.path().display()
    );
    render_products(instruments.products(), &header)
}

/// `products` (each future followed by its option series, as [`Instruments::products`] holds
/// them) as TOML, after `header` (each of its lines becomes a `# ` comment line). Option series
/// are written inside their future's entry; products flagged [`ProductSpec::unknown`] are not
/// written (they are admitted at run time, never listed).
pub fn render_products(products: &[ProductSpec], header: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(if line.is_empty() { "#" } else { "# " });
        out.push_str(line);
        out.push('\n');
    }
    let mut section = None;
    for future in products.iter().filter(|p| p.kind == Kind::Future && !p.unknown) {
        if section != Some(future.exchange) {
            section = Some(future.exchange);
            let title = format!("# --- {} ", future.exchange.full_name());
            let _ = write!(out, "\n{title}{}\n", "-".repeat(99usize.saturating_sub(title.chars().count())));
        }
        let comment = if future.name.is_empty() { future.code.as_str() } else { future.name.as_str() };
        let _ = writeln!(out, "\n{:<33}# {}", "[[product]]", comment.replace(['\n', '\r'], " "));
        let _ = writeln!(out, "exchange = {}", string(future.exchange.as_str()));
        let _ = writeln!(out, "code = {}", string(&future.code));
        let _ = writeln!(out, "name = {}", string(&future.name));
        let _ = writeln!(out, "price_tick = {}", float(future.price_tick));
        let _ = writeln!(out, "volume_multiple = {}", future.volume_multiple);
        let days: Vec<String> = future.day_sessions.iter().map(|s| string(&segment(*s))).collect();
        let _ = writeln!(out, "day_sessions = [{}]", days.join(", "));
        if let Some(night) = future.night_session {
            let _ = writeln!(out, "night_session = {}", string(&segment(night)));
        }
        let ids: Vec<String> = future.instruments.iter().map(|id| string(id)).collect();
        let _ = writeln!(out, "instruments = [{}]", ids.join(", "));
        let _ = writeln!(out, "reference_price = {}", float(future.reference_price));
        let option = products.iter().find(|p| {
            matches!(p.kind, Kind::Option { .. }) && !p.unknown && p.underlying.as_deref() == Some(&future.code)
        });
        if let Some(option @ ProductSpec { kind: Kind::Option { id_form }, .. }) = option {
            let form = match id_form {
                IdForm::Compact => "compact",
                IdForm::Dash => "dash",
            };
            let _ = writeln!(
                out,
                "options = {{ code = {}, id_form = {}, price_tick = {}, volume_multiple = {} }}",
                string(&option.code),
                string(form),
                float(option.price_tick),
                option.volume_multiple
            );
        }
    }
    out
}

/// `"HH:MM-HH:MM"`.
fn segment(s: Segment) -> String {
    let hm = |ms: u32| format!("{:02}:{:02}", ms / 3_600_000, ms / 60_000 % 60);
    format!("{}-{}", hm(s.start_ms), hm(s.end_ms))
}

/// A TOML float that parses back to the same `f64` (Rust's shortest round-trip form, which
/// always has a `.` or an exponent).
fn float(x: f64) -> String {
    format!("{x:?}")
}

/// A TOML basic string.
fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::products::tests::shipped;

    #[test]
    fn the_shipped_table_renders_and_loads_back_equal() {
        let table = shipped();
        let text = render(&table);
        let back =
            Instruments::from_toml_str(&text, Path::new("rendered.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back.products(), table.products());
        assert!(
            text.contains("\n[[product]]                      # copper\nexchange = \"SHFE\"\ncode = \"cu\"\n"),
            "{text}"
        );
        assert!(
            text.contains("options = { code = \"IO\", id_form = \"dash\", price_tick = 0.2, volume_multiple = 100 }")
        );
        assert!(text.contains("# --- China Financial Futures Exchange ---"));
        let section = |t: &str| t.lines().filter(|l| l.starts_with("# ---")).map(str::to_owned).collect::<Vec<_>>();
        let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml"));
        let shipped = section(&shipped.unwrap());
        assert_eq!(section(&text).len(), 6);
        assert!(section(&text).iter().all(|l| l.len() == shipped[0].len()), "{text}");
        // Rendering what was rendered changes nothing but the header's file name.
        let again = render(&back);
        assert_eq!(again.lines().skip(2).collect::<Vec<_>>(), text.lines().skip(2).collect::<Vec<_>>());
    }

    #[test]
    fn names_with_quotes_and_odd_floats_round_trip() {
        let mut products = shipped().products().to_vec();
        products[0].name = "copper \"Cu\" \\ 铜\tx".to_owned();
        products[0].price_tick = 1e-5;
        products[0].reference_price = 0.3;
        for p in &mut products[..2] {
            p.night_session = None;
            p.session_map = super::super::SessionMap::new(&p.day_sessions, None);
        }
        let text = render_products(&products, "line one\n\nline three");
        assert!(text.starts_with("# line one\n#\n# line three\n"), "{text}");
        let back = Instruments::from_toml_str(&text, Path::new("x.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
        // The option's name follows its future's.
        products[1].name = format!("{} options", products[0].name);
        assert_eq!(back.products(), &products[..]);
    }
}
