//! The deployment template's wiring, read as CloudFormation reads it (no AWS account needed): every alarm and
//! event rule publishes to the alarm topic, whose own key (rotated, not the AWS-managed SNS key that CloudWatch and
//! EventBridge cannot use) lets them publish, and whose policy admits only this account's alarms and rule; every
//! object of the catalogue has a lag alarm; each task role grants what deploy/README.md's roles table says.

use serde_yaml::{Mapping, Value};
use std::collections::BTreeSet;

fn resources(template: &Value) -> &Mapping {
    template["Resources"].as_mapping().unwrap()
}

/// The resources of a type, by logical id.
fn of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    let all = resources(template).iter();
    all.filter(|(_, r)| r["Type"] == kind).map(|(id, r)| (id.as_str().unwrap(), &r["Properties"])).collect()
}

/// `!Tag value` as (tag, value).
fn tagged(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(t) => Some((t.tag.to_string(), &t.value)),
        _ => None,
    }
}

/// The logical id `!Ref` names, or the resource `!GetAtt X.Arn` names.
fn target(value: &Value) -> Option<&str> {
    let (tag, inner) = tagged(value)?;
    match tag.as_str() {
        "!Ref" => inner.as_str(),
        "!GetAtt" => inner.as_str()?.split_once('.').map(|(id, _)| id),
        _ => None,
    }
}

/// A string, a list of strings, or either branch of an `!If`: every string it may be.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        Value::Tagged(t) if t.tag == "!If" => t.value.as_sequence().unwrap()[1..].iter().flat_map(strings).collect(),
        Value::Tagged(t) if t.tag == "!Sub" => strings(&t.value),
        Value::Tagged(t) => vec![format!("{}:{}", t.tag, t.value.as_str().unwrap_or_default())],
        _ => Vec::new(),
    }
}

/// The statements of a role's inline policies, `!If` statements with both branches.
fn statements<'a>(template: &'a Value, role: &str) -> Vec<&'a Value> {
    let policies = resources(template)
        .get(role)
        .and_then(|r| r["Properties"]["Policies"].as_sequence())
        .unwrap_or_else(|| panic!("no role {role} with inline policies"));
    let all = policies.iter().flat_map(|p| p["PolicyDocument"]["Statement"].as_sequence().unwrap());
    all.flat_map(|s| match tagged(s) {
        Some((tag, branches)) if tag == "!If" => branches.as_sequence().unwrap()[1..].iter().collect(),
        _ => vec![s],
    })
    .filter(|s| s.is_mapping())
    .collect()
}

fn actions(statement: &Value) -> BTreeSet<String> {
    strings(&statement["Action"]).into_iter().collect()
}

/// What a role is allowed: (action, resource) for every Allow statement.
fn allowed(template: &Value, role: &str) -> Vec<(String, Vec<String>)> {
    let allows = statements(template, role).into_iter().filter(|s| s["Effect"] == "Allow");
    let resources = |s: &Value| match &s["Resource"] {
        Value::Sequence(items) => {
            items.iter().flat_map(|r| target(r).map(str::to_owned).into_iter().chain(strings(r))).collect()
        }
        one => target(one).map(str::to_owned).into_iter().chain(strings(one)).collect(),
    };
    allows.flat_map(|s| actions(s).into_iter().map(move |a| (a, resources(s)))).collect()
}

#[test]
fn every_alarm_and_rule_publishes_to_a_topic_whose_key_and_policy_let_them() {
    let template = test_support::deploy_template();
    let topics = of_type(&template, "AWS::SNS::Topic");
    assert_eq!(topics.len(), 1);
    let (topic, properties) = topics[0];
    let key = target(&properties["KmsMasterKeyId"]).expect("the topic's key is the stack's own, not alias/aws/sns");
    let key = &resources(&template)[key];
    assert_eq!(
        (&key["Type"], &key["Properties"]["EnableKeyRotation"]),
        (&Value::from("AWS::KMS::Key"), &Value::from(true))
    );
    let publishers = ["cloudwatch.amazonaws.com", "events.amazonaws.com"];
    let key_statements = key["Properties"]["KeyPolicy"]["Statement"].as_sequence().unwrap();
    for service in publishers {
        let lets = key_statements.iter().any(|s| {
            s["Effect"] == "Allow"
                && strings(&s["Principal"]["Service"]).iter().any(|p| p == service)
                && ["kms:Decrypt", "kms:GenerateDataKey*"].iter().all(|a| actions(s).contains(*a))
        });
        assert!(lets, "the key's policy lets {service} encrypt for the topic");
    }

    // Every alarm tells people (the topic) or acts (a scaling policy of the stack), never neither.
    let scaling: Vec<&str> =
        of_type(&template, "AWS::ApplicationAutoScaling::ScalingPolicy").into_iter().map(|(id, _)| id).collect();
    let alarms = of_type(&template, "AWS::CloudWatch::Alarm");
    assert!(alarms.len() > 4);
    for (id, alarm) in &alarms {
        let actions: Vec<Option<&str>> = alarm["AlarmActions"].as_sequence().unwrap().iter().map(target).collect();
        let notifies = !actions.is_empty() && actions.iter().all(|a| *a == Some(topic));
        let scales = !actions.is_empty() && actions.iter().all(|a| a.is_some_and(|a| scaling.contains(&a)));
        assert!(notifies || scales, "{id} publishes elsewhere: {actions:?}");
    }
    let rules = of_type(&template, "AWS::Events::Rule");
    assert!(!rules.is_empty());
    for (id, rule) in &rules {
        let targets = rule["Targets"].as_sequence().unwrap();
        assert!(targets.iter().all(|t| target(&t["Arn"]) == Some(topic)), "{id} targets elsewhere");
    }

    let policies = of_type(&template, "AWS::SNS::TopicPolicy");
    assert_eq!(policies.len(), 1);
    let topic_statements = policies[0].1["PolicyDocument"]["Statement"].as_sequence().unwrap();
    for service in publishers {
        let statement = topic_statements
            .iter()
            .find(|s| strings(&s["Principal"]["Service"]).iter().any(|p| p == service))
            .unwrap_or_else(|| panic!("the topic's policy lets {service} publish"));
        assert!(actions(statement).contains("sns:Publish"));
        let conditions = statement["Condition"].as_mapping().expect("a source condition");
        let keys: Vec<String> = conditions
            .values()
            .flat_map(|c| c.as_mapping().unwrap().keys())
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        assert!(keys.iter().any(|k| k == "aws:SourceAccount" || k == "aws:SourceArn"), "{service}: {keys:?}");
    }
    // The rule's own ARN, so no other rule publishes.
    let events = topic_statements
        .iter()
        .find(|s| strings(&s["Principal"]["Service"]).contains(&"events.amazonaws.com".to_owned()))
        .unwrap();
    assert_eq!(target(&events["Condition"]["ArnEquals"]["aws:SourceArn"]), Some(rules[0].0));

    // A lag alarm per object of the catalogue, on the consumer's `Files` metric, absence breaching.
    let catalogue: toml::Table = toml::from_str(include_str!("../../common/catalogue.toml")).unwrap();
    for object in catalogue["object"].as_array().unwrap() {
        let name = object["name"].as_str().unwrap();
        let lag = alarms.iter().find(|(_, a)| {
            a["Namespace"] == "ZuoraLakeExport"
                && a["MetricName"] == "Files"
                && a["Dimensions"].as_sequence().unwrap().iter().any(|d| d["Name"] == "Object" && d["Value"] == name)
        });
        let (_, lag) = lag.unwrap_or_else(|| panic!("no lag alarm for {name}"));
        assert_eq!(
            (&lag["TreatMissingData"], &lag["ComparisonOperator"]),
            (&Value::from("breaching"), &Value::from("LessThanThreshold"))
        );
    }
}

#[test]
fn each_task_role_grants_what_its_work_needs_and_no_more() {
    let template = test_support::deploy_template();
    let ledger = "/zuora-lake-export/ledger/";
    let producers_records = ["requests/", "jobs/", "session/"];

    // The status task reads the marks: no queue, no write, no secret.
    let status = allowed(&template, "StatusTaskRole");
    assert!(!status.is_empty());
    for (action, resources) in &status {
        assert!(["s3:GetObject", "s3:ListBucket"].contains(&action.as_str()), "status may {action}");
        if action == "s3:GetObject" {
            assert!(resources.iter().all(|r| r.contains(&format!("{ledger}published/"))), "{resources:?}");
        }
    }
    let (_, task) = of_type(&template, "AWS::ECS::TaskDefinition")
        .into_iter()
        .find(|(id, _)| id.starts_with("Status"))
        .expect("the status task");
    assert_eq!(target(&task["TaskRoleArn"]), Some("StatusTaskRole"));
    assert!(task["ContainerDefinitions"][0]["Secrets"].is_null(), "the status task gets no Zuora secret");

    // The producer writes only its own ledger records.
    for (action, resources) in allowed(&template, "ProducerTaskRole") {
        if action.starts_with("s3:Put") {
            let own = |r: &String| producers_records.iter().any(|p| r.contains(&format!("{ledger}{p}")));
            assert!(resources.iter().all(own), "the producer may {action} on {resources:?}");
        }
    }
    // The consumer writes each object's files and metadata, the published marks, and the old export's buckets when
    // it replaces it; nothing else.
    let catalogue: toml::Table = toml::from_str(include_str!("../../common/catalogue.toml")).unwrap();
    let objects: Vec<&str> =
        catalogue["object"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    for (action, resources) in allowed(&template, "ConsumerTaskRole") {
        if action.starts_with("s3:Put") {
            for resource in resources {
                let file = objects.iter().any(|o| resource.ends_with(&format!("${{RawBucketName}}/{o}/*")));
                let mark = resource.ends_with(&format!("{ledger}published/*"));
                let old = resource.contains("${OldExportBucketPattern}");
                assert!(file || mark || old, "the consumer may {action} on {resource}");
            }
        }
    }
    // And is denied the producer's records explicitly.
    let denies = statements(&template, "ConsumerTaskRole").into_iter().filter(|s| s["Effect"] == "Deny");
    let denied: Vec<String> =
        denies.filter(|s| actions(s).contains("s3:PutObject")).flat_map(|s| strings(&s["Resource"])).collect();
    for record in producers_records {
        assert!(
            denied.iter().any(|r| r.contains(&format!("{ledger}{record}"))),
            "consumer not denied {record}: {denied:?}"
        );
    }
    // Nobody in the stack takes messages off the lake queue: they are the lake's.
    for role in ["ProducerTaskRole", "ConsumerTaskRole", "StatusTaskRole", "SchedulerRole"] {
        for (action, resources) in allowed(&template, role) {
            let takes =
                ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"].contains(&action.as_str());
            assert!(!(takes && resources.iter().any(|r| r == "LakeQueue")), "{role} may {action} on the lake queue");
        }
    }
}

#[test]
fn the_dashboard_shows_every_embedded_metric_and_the_queues() {
    let template = test_support::deploy_template();
    let dashboards = of_type(&template, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1);
    let (tag, body) = tagged(&dashboards[0].1["DashboardBody"]).expect("a !Sub body");
    assert_eq!(tag, "!Sub");
    // As CloudFormation renders it: every ${...} replaced by a value.
    let mut text = body.as_str().unwrap().to_owned();
    while let Some(start) = text.find("${") {
        let end = start + text[start..].find('}').unwrap();
        text.replace_range(start..=end, "value");
    }
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let rendered = dashboard.to_string();
    for metric in
        ["LagSeconds", "Records", "Bytes", "ZuoraWaitSeconds", "RelaySeconds", "ApproximateNumberOfMessagesDelayed"]
    {
        assert!(rendered.contains(metric), "the dashboard lacks {metric}");
    }
    assert!(rendered.contains(common::metrics::NAMESPACE));
}

#[test]
fn every_s3_grant_is_limited_to_buckets_of_the_expected_account() {
    let template = test_support::deploy_template();
    for role in ["ProducerTaskRole", "StatusTaskRole", "ConsumerTaskRole"] {
        let grants = statements(&template, role).into_iter().filter(|s| s["Effect"] == "Allow");
        for statement in grants.filter(|s| actions(s).iter().any(|a| a.starts_with("s3:"))) {
            let account = &statement["Condition"]["StringEquals"]["s3:ResourceAccount"];
            let names = strings(account).join(" ") + &format!("{account:?}");
            // The stack's own account, or the old export's buckets' owner (this account when none is given).
            assert!(
                names.contains("AWS::AccountId") && (names.contains("OldExportBucketOwner") || !names.contains("!If")),
                "{role} {:?}: s3:ResourceAccount is {account:?}",
                statement["Sid"]
            );
        }
    }
}
