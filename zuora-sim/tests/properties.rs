//! The simulator's ZOQL parser on generated queries (proptest): every query of the grammar it documents (filters
//! with comparisons, `IS [NOT] NULL`, `AND`, `OR`, parentheses; `ORDER BY`) parses to the fields selected and the
//! order asked for, whatever the case of names and keywords; an unknown field is refused with its
//! name; and no input, however broken, panics it.

use proptest::prelude::*;
use std::sync::Arc;
use zuora_sim::schema::{FieldType, ObjectSchema, objects};
use zuora_sim::zoql::{Column, Condition, Query};

fn parse(text: &str, schema: &ObjectSchema) -> Result<Query, String> {
    let all: Vec<Arc<ObjectSchema>> = objects().into_iter().map(Arc::new).collect();
    zuora_sim::zoql::parse(text, schema, &all)
}

/// Every relation of an object: the declared ones and a reference field `<Name>Id`'s `<Name>`.
fn relations(schema: &ObjectSchema) -> Vec<&'static str> {
    let implicit =
        schema.fields.iter().filter(|f| matches!(f.ty, FieldType::Ref(_))).filter_map(|f| f.name.strip_suffix("Id"));
    schema.relations.iter().map(|r| r.name).chain(implicit).collect()
}

fn schema() -> impl Strategy<Value = ObjectSchema> {
    proptest::sample::select(objects())
}

/// `name` with each letter's case drawn from `cases`.
fn recase(name: &str, cases: &[bool]) -> String {
    name.chars()
        .zip(cases.iter().cycle())
        .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
        .collect()
}

/// A condition over the object's fields, rendered.
fn condition(fields: Vec<&'static str>) -> impl Strategy<Value = String> {
    let atom = (
        proptest::sample::select(fields.clone()),
        proptest::sample::select(vec!["=", "!=", "<>", "<", "<=", ">", ">="]),
        prop_oneof![
            "[a-z' ]{0,8}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
            (-1000i64..1000).prop_map(|n| n.to_string()),
            Just("true".to_owned()),
            Just("null".to_owned()),
            Just("'2020-04-01T00:00:00+00:00'".to_owned()),
            Just("'2020-04-01T00:00:00'".to_owned()),
            Just("'2020-04-01 00:00:00'".to_owned()),
        ],
    )
        .prop_map(|(field, op, literal)| format!("{field} {op} {literal}"));
    let atom = prop_oneof![
        4 => atom,
        1 => (proptest::sample::select(fields.clone()), any::<bool>())
            .prop_map(|(field, not)| format!("{field} IS {}NULL", if not { "not " } else { "" })),
    ];
    atom.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} AND {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} or {b}")),
            inner.prop_map(|a| format!("({a})")),
        ]
    })
}

fn query() -> impl Strategy<Value = (ObjectSchema, Vec<usize>, Vec<(usize, bool)>, String)> {
    schema().prop_flat_map(|schema| {
        let width = schema.fields.len();
        (
            proptest::collection::vec(0..width, 1..8),
            proptest::collection::vec(any::<bool>(), 1..5),
            any::<bool>(),
            proptest::option::of(condition(schema.fields.iter().map(|f| f.name).collect())),
            proptest::collection::vec((0..width, proptest::option::of(any::<bool>())), 0..3),
            Just(schema),
        )
            .prop_map(|(picked, cases, dotted, filter, order, schema)| {
                let names: Vec<String> = picked
                    .iter()
                    .map(|&i| {
                        let name = recase(schema.fields[i].name, &cases);
                        if dotted { format!("{}.{name}", schema.name) } else { name }
                    })
                    .collect();
                let mut text = format!(
                    "{} {} {} {}",
                    recase("select", &cases),
                    names.join(", "),
                    recase("from", &cases),
                    schema.name
                );
                if let Some(filter) = filter {
                    text.push_str(&format!(" {} {filter}", recase("where", &cases)));
                }
                if !order.is_empty() {
                    let by: Vec<String> = order
                        .iter()
                        .map(|(i, direction)| {
                            let name = schema.fields[*i].name;
                            match direction {
                                None => name.to_owned(),
                                Some(true) => format!("{name} DESC"),
                                Some(false) => format!("{name} asc"),
                            }
                        })
                        .collect();
                    text.push_str(&format!(" ORDER BY {}", by.join(", ")));
                }
                let order = order.into_iter().map(|(i, direction)| (i, direction == Some(true))).collect();
                (schema, picked, order, text)
            })
    })
}

proptest! {
    #[test]
    fn generated_queries_parse_to_the_fields_selected((schema, picked, order, text) in query()) {
        let parsed = parse(&text, &schema).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(parsed.fields, picked.into_iter().map(Column::Own).collect::<Vec<_>>());
        prop_assert_eq!(parsed.order, order);
        if !text.to_ascii_lowercase().contains(" where ") {
            prop_assert!(parsed.filter.is_none());
        }
    }

    #[test]
    fn every_relation_in_any_case_reads_the_related_id(schema in schema(), cases in proptest::collection::vec(any::<bool>(), 1..5), pick in any::<proptest::sample::Index>()) {
        let relations = relations(&schema);
        prop_assume!(!relations.is_empty());
        let relation = relations[pick.index(relations.len())];
        let text = format!("SELECT Id, {}.{} FROM {}", recase(relation, &cases), recase("id", &cases), schema.name);
        let parsed = parse(&text, &schema).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let Column::Joined(join) = &parsed.fields[1] else { return Err(TestCaseError::fail(format!("{text}: not joined"))) };
        prop_assert_eq!((join.path.relation, join.field, join.field_name), (relation, None, "Id"));
    }

    #[test]
    fn an_unknown_field_is_refused_with_its_name((schema, _picked, _order, text) in query()) {
        let broken = text.replacen(' ', " NoSuchField__x,", 1);
        let error = parse(&broken, &schema).expect_err("an unknown field");
        prop_assert!(error.contains("NoSuchField__x"), "{}", error);
    }

    #[test]
    fn no_input_panics_the_parser(text in ".{0,60}", schema in schema()) {
        let _ = parse(&text, &schema);
        let _ = parse(&format!("SELECT Id FROM {} WHERE {text}", schema.name), &schema);
    }
}

#[test]
fn a_time_compared_to_a_space_separated_literal_is_ignored_as_zuora_does() {
    let schema = objects().into_iter().find(|o| o.name == "Account").expect("Account is simulated");
    let parsed = parse("SELECT Id FROM Account WHERE UpdatedDate >= '2020-04-01 00:00:00'", &schema).expect("parses");
    assert!(matches!(parsed.filter, Some(Condition::Ignored)));
}
