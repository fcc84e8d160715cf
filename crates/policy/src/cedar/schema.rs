//! Gatehouse's published Cedar schema plus the deployment's fragments.

use cedar_policy::{Schema, SchemaFragment};

use crate::PolicyError;
use crate::source::SourceFile;

/// The schema every Cedar policy is validated against (`gatehouse policy schema` prints it).
pub const GATEHOUSE_SCHEMA: &str = include_str!("../../schema/gatehouse.cedarschema");

/// Declared when the deployment does not type `context.arguments` itself.
const EMPTY_ARGUMENTS: &str = "namespace Gatehouse { type Arguments = {}; }";

/// The published schema plus `fragments` (typically the `Arguments` type), which may only add
/// declarations.
pub fn build(fragments: &[SourceFile]) -> Result<Schema, PolicyError> {
    let mut all = vec![parse_fragment(GATEHOUSE_SCHEMA, None)?];
    let mut declares_arguments = false;
    for f in fragments {
        declares_arguments |= f
            .text
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w == ["type", "Arguments"]);
        all.push(parse_fragment(&f.text, Some(f))?);
    }
    if !declares_arguments {
        all.push(parse_fragment(EMPTY_ARGUMENTS, None)?);
    }
    Schema::from_schema_fragments(all).map_err(|e| PolicyError::Schema {
        file: fragments
            .iter()
            .map(SourceFile::name)
            .collect::<Vec<_>>()
            .join(", "),
        line: 0,
        message: format!("{e}; the published schema can only be extended, not redefined"),
    })
}

fn parse_fragment(text: &str, file: Option<&SourceFile>) -> Result<SchemaFragment, PolicyError> {
    SchemaFragment::from_cedarschema_str(text)
        .map(|(f, _warnings)| f)
        .map_err(|e| {
            let (name, line) = match file {
                Some(f) => (f.name(), crate::diagnostic_line(&e, &f.text)),
                None => ("(built-in schema)".into(), 0),
            };
            PolicyError::Schema {
                file: name,
                line,
                message: crate::diagnostic_message(&e),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_schema_builds_alone_and_with_arguments() {
        build(&[]).unwrap();
        let args = SourceFile {
            path: "args.cedarschema".into(),
            text: "namespace Gatehouse { type Arguments = { project?: String }; }".into(),
        };
        build(&[args]).unwrap();
        let clash = SourceFile {
            path: "bad.cedarschema".into(),
            text: "namespace Gatehouse { entity User; }".into(),
        };
        let e = build(&[clash]).unwrap_err().to_string();
        assert!(e.contains("bad.cedarschema"), "{e}");
    }
}
