//! The deployment template's wiring, read as CloudFormation reads it (no AWS account needed): every alarm and
//! event rule publishes to the alarm topic, whose own key (rotated, not the AWS-managed SNS key that CloudWatch and
//! EventBridge cannot use) lets them publish, and whose policy admits only this account's alarms and rule; every
//! alarm someone is told of links to a section of the runbook that exists; staleness is one alarm on the status
//! task's metric, whatever the catalogue; each task role grants what deploy/README.md's roles table says; the
//! queues and the bucket use the stack's own rotated keys; a lake in another account may take what is its own.
//! And what the deploy rehearsal cannot see (moto evaluates no condition, resource policy or trust policy): every
//! role trusts its service for this account only, every queue and the bucket refuse calls without TLS, only the
//! tasks that call Zuora may read its secret, and every task runs the one image, by digest.
//! (Over 600 lines: seventeen checks of one template, with the few readers of CloudFormation and IAM they share.)

use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The raw bucket's objects, as the template writes their ARNs.
const RAW_OBJECTS: &str = "arn:${AWS::Partition}:s3:::${RawBucketName}/";
/// The lake's account, as the template names it as a principal.
const LAKE_ROOT: &str = "arn:${AWS::Partition}:iam::${LakeAccountId}:root";

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

/// The statements of a policy document with the condition each depends on: a statement written
/// `!If [Condition, statement, !Ref AWS::NoValue]` comes with `Some(Condition)`.
fn conditional_statements(document: &Value) -> Vec<(Option<&str>, &Value)> {
    let list = document["Statement"].as_sequence().expect("a statement list");
    list.iter()
        .flat_map(|s| match s {
            Value::Tagged(t) if t.tag == "!If" => {
                let branches = t.value.as_sequence().unwrap();
                let condition = branches[0].as_str();
                branches[1..].iter().map(|b| (condition, b)).collect::<Vec<_>>()
            }
            _ => vec![(None, s)],
        })
        .filter(|(_, s)| s.is_mapping())
        .collect()
}

/// The statements of a role's inline policies, `!If` statements with both branches.
fn statements<'a>(template: &'a Value, role: &str) -> Vec<&'a Value> {
    let policies = resources(template)
        .get(role)
        .and_then(|r| r["Properties"]["Policies"].as_sequence())
        .unwrap_or_else(|| panic!("no role {role} with inline policies"));
    policies.iter().flat_map(|p| conditional_statements(&p["PolicyDocument"])).map(|(_, s)| s).collect()
}

fn actions(statement: &Value) -> BTreeSet<String> {
    strings(&statement["Action"]).into_iter().collect()
}

/// A statement's resources: the logical ids `!Ref`/`!GetAtt` name, and every string they may be.
fn statement_resources(statement: &Value) -> Vec<String> {
    let one = |r: &Value| target(r).map(str::to_owned).into_iter().chain(strings(r)).collect::<Vec<_>>();
    match &statement["Resource"] {
        Value::Sequence(items) => items.iter().flat_map(one).collect(),
        single => one(single),
    }
}

/// A role's inline statements, `!If` statements with both branches; none when it has no inline policy.
fn inline_statements<'a>(template: &'a Value, role: &str) -> Vec<&'a Value> {
    let resource = resources(template).get(role).unwrap_or_else(|| panic!("no role {role}"));
    let policies = resource["Properties"]["Policies"].as_sequence().map(|p| p.as_slice()).unwrap_or_default();
    policies.iter().flat_map(|p| conditional_statements(&p["PolicyDocument"])).map(|(_, s)| s).collect()
}

/// Every logical id or parameter a value names with `!Ref` or `!GetAtt`, however deep (`AWS::NoValue` left out).
fn references(value: &Value, out: &mut BTreeSet<String>) {
    if let Some(id) = target(value).filter(|id| *id != "AWS::NoValue") {
        out.insert(id.to_owned());
    }
    match value {
        Value::Sequence(items) => items.iter().for_each(|v| references(v, out)),
        Value::Mapping(map) => map.values().for_each(|v| references(v, out)),
        Value::Tagged(t) => references(&t.value, out),
        _ => {}
    }
}

/// Whether a value is this account's id (`!Ref AWS::AccountId`, or `!Sub "${AWS::AccountId}"`).
fn is_this_account(value: &Value) -> bool {
    target(value) == Some("AWS::AccountId") || strings(value) == ["${AWS::AccountId}"]
}

/// Whether a statement refuses every call without TLS: a Deny to anyone of every action of `service` when
/// `aws:SecureTransport` is false.
fn refuses_plain_http(statement: &Value, service: &str) -> bool {
    statement["Effect"] == "Deny"
        && statement["Principal"] == "*"
        && actions(statement).iter().any(|a| a.as_str() == "*" || *a == format!("{service}:*"))
        && statement["Condition"]["Bool"]["aws:SecureTransport"] == "false"
}

/// Whether a statement's conditions hold for a listing with `prefix` (`None`: no prefix, the whole bucket). Only
/// `StringLike` and `StringNotLike` on `s3:prefix` are read (a missing key fails the one and passes the other, as in
/// IAM); any other condition fails the test.
fn prefix_conditions_hold(statement: &Value, prefix: Option<&str>) -> bool {
    let Some(conditions) = statement["Condition"].as_mapping() else { return true };
    conditions.iter().all(|(operator, keys)| {
        let operator = operator.as_str().unwrap_or_default();
        keys.as_mapping().unwrap().iter().all(|(key, patterns)| {
            assert_eq!(key, "s3:prefix", "a condition this test does not read: {operator} {key:?}");
            let matches = prefix.is_some_and(|p| strings(patterns).iter().any(|pattern| covers(pattern, p)));
            match operator {
                "StringLike" => matches,
                "StringNotLike" => !matches,
                other => panic!("a condition this test does not read: {other} s3:prefix"),
            }
        })
    })
}

/// What a role is allowed: (action, resources) for every Allow statement.
fn allowed(template: &Value, role: &str) -> Vec<(String, Vec<String>)> {
    let allows = statements(template, role).into_iter().filter(|s| s["Effect"] == "Allow");
    allows.flat_map(|s| actions(s).into_iter().map(move |a| (a, statement_resources(s)))).collect()
}

/// Whether an IAM resource pattern (`*`: any characters) covers `arn`.
fn covers(pattern: &str, arn: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == arn,
        Some((head, tail)) => arn.starts_with(head) && (head.len()..=arn.len()).any(|i| covers(tail, &arn[i..])),
    }
}

/// Whether the role's policies allow `action` on `resource` (a logical id, or an ARN as the template writes it).
fn grants(template: &Value, role: &str, action: &str, resource: &str) -> bool {
    let allows = allowed(template, role);
    allows.iter().any(|(a, resources)| a == action && resources.iter().any(|r| covers(r, resource)))
}

/// Whether the role's policies deny `action` on `resource` explicitly.
fn denies(template: &Value, role: &str, action: &str, resource: &str) -> bool {
    let denials = statements(template, role).into_iter().filter(|s| s["Effect"] == "Deny");
    denials.filter(|s| actions(s).contains(action)).any(|s| statement_resources(s).iter().any(|r| covers(r, resource)))
}

/// The keys of the catalogue's objects' first files (as `[defaults] key` or the object's own `key` makes them).
fn catalogue_keys() -> Vec<(String, String)> {
    let catalogue: toml::Table = toml::from_str(include_str!("../../common/catalogue.toml")).unwrap();
    let default_key = catalogue["defaults"]["key"].as_str().unwrap().to_owned();
    let objects = catalogue["object"].as_array().unwrap();
    objects
        .iter()
        .map(|object| {
            let name = object["name"].as_str().unwrap().to_owned();
            let key = object.get("key").and_then(|k| k.as_str()).unwrap_or(&default_key);
            let key = key
                .replace("{object}", &name)
                .replace("{date}", "2026-12-04")
                .replace("{job_id}", "job")
                .replace("{batch_id}", "batch")
                .replace("{segment}", "0");
            (name, key)
        })
        .collect()
}

/// The runbook the alarms link to.
fn runbook() -> String {
    std::fs::read_to_string(test_support::tests_dir().join("../docs/operations.md")).expect("docs/operations.md")
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
}

#[test]
fn staleness_is_one_alarm_on_the_hourly_status_metric_whatever_the_catalogue() {
    let template = test_support::deploy_template();
    let alarms = of_type(&template, "AWS::CloudWatch::Alarm");
    // Objects are data: no alarm names one (adding an object to the catalogue needs no template change).
    for (id, alarm) in &alarms {
        let dimensions = alarm["Dimensions"].as_sequence().map(|d| d.as_slice()).unwrap_or_default();
        assert!(dimensions.iter().all(|d| d["Name"] != "Object"), "{id} is an alarm of one object");
    }
    let stale: Vec<_> = alarms
        .iter()
        .filter(|(_, a)| a["Namespace"] == common::metrics::NAMESPACE && a["MetricName"] == "StaleObjects")
        .collect();
    assert_eq!(stale.len(), 1, "one alarm on StaleObjects");
    let (id, alarm) = stale[0];
    assert_eq!(*id, "StaleObjectsAlarm");
    assert!(alarm["Dimensions"].is_null(), "the status task writes StaleObjects without dimensions");
    assert_eq!(
        (&alarm["Statistic"], &alarm["ComparisonOperator"], &alarm["Threshold"]),
        (&Value::from("Maximum"), &Value::from("GreaterThanThreshold"), &Value::from(0))
    );
    // A check that did not run is no news of freshness: missing data breaches.
    assert_eq!(alarm["TreatMissingData"], "breaching");
    assert_eq!((&alarm["Period"], &alarm["EvaluationPeriods"]), (&Value::from(3600), &Value::from(2)));

    // The metric's writer: the status task with --metrics, at least hourly (the alarm's period).
    let (_, task) = of_type(&template, "AWS::ECS::TaskDefinition")
        .into_iter()
        .find(|(id, _)| *id == "StatusTaskDefinition")
        .expect("the status task");
    let command = strings(&task["ContainerDefinitions"][0]["Command"]);
    assert_eq!(command, ["producer", "status", "--metrics"]);
    assert_eq!(template["Parameters"]["StatusScheduleExpression"]["Default"], "rate(1 hour)");
    let (_, schedule) = of_type(&template, "AWS::Scheduler::Schedule")
        .into_iter()
        .find(|(_, s)| target(&s["Target"]["EcsParameters"]["TaskDefinitionArn"]) == Some("StatusTaskDefinition"))
        .expect("a schedule runs the status task");
    assert_eq!(target(&schedule["ScheduleExpression"]), Some("StatusScheduleExpression"));
}

#[test]
fn every_alarm_and_rule_has_a_runbook_section_its_description_links_to() {
    let template = test_support::deploy_template();
    let runbook = runbook();
    let headings: Vec<&str> = runbook.lines().filter_map(|l| l.strip_prefix("### ")).map(str::trim).collect();
    let (topic, _) = of_type(&template, "AWS::SNS::Topic")[0];

    // What someone is told of: every alarm that publishes to the topic, the table writer's scaling alarms (they
    // page nobody, and sit in ALARM for hours where an operator sees them) and every rule; for each, the texts that
    // must link to its section. An alarm that only scales the consumers from zero pages nobody and clears in minutes.
    let mut paged: Vec<(&str, Vec<(String, String)>)> = Vec::new();
    let mut alarms = BTreeSet::new();
    for (id, alarm) in of_type(&template, "AWS::CloudWatch::Alarm") {
        alarms.insert(id);
        let actions = alarm["AlarmActions"].as_sequence().unwrap();
        if actions.iter().any(|a| target(a) == Some(topic)) || id.starts_with("TableWriter") {
            paged.push((id, vec![("AlarmDescription".to_owned(), strings(&alarm["AlarmDescription"]).join(" "))]));
        }
    }
    assert!(alarms.contains("TableWriterIdleAlarm") && alarms.contains("TableWriterWorkWaitingAlarm"));
    for (id, rule) in of_type(&template, "AWS::Events::Rule") {
        let mut texts = vec![("Description".to_owned(), strings(&rule["Description"]).join(" "))];
        for t in rule["Targets"].as_sequence().unwrap() {
            let what = format!("target {}'s InputTransformer.InputTemplate", t["Id"].as_str().unwrap_or("?"));
            texts.push((what, strings(&t["InputTransformer"]["InputTemplate"]).join(" ")));
        }
        paged.push((id, texts));
    }
    assert!(paged.len() > 4);

    let mut missing = Vec::new();
    for (id, texts) in &paged {
        // GitHub's anchor of the heading `### <Id>` is `#<id lowercased>` (only when the heading is that alone).
        match headings.iter().filter(|h| *h == id).count() {
            1 => {}
            0 => missing.push(format!("{id}: docs/operations.md has no heading `### {id}`")),
            n => {
                missing.push(format!("{id}: docs/operations.md has {n} headings `### {id}` (the anchor is ambiguous)"))
            }
        }
        let link = format!("${{RunbookUrl}}#{}", id.to_lowercase());
        for (what, text) in texts {
            if !text.contains(&link) {
                missing.push(format!("{id}: its {what} does not link to {link}: {text:?}"));
            }
        }
    }
    // And no section for an alarm or rule that is not there (renamed or removed).
    let ids: BTreeSet<&str> = paged.iter().map(|(id, _)| *id).collect();
    for heading in &headings {
        let one_word = !heading.contains(char::is_whitespace);
        if one_word && (heading.ends_with("Alarm") || heading.ends_with("Rule")) && !ids.contains(heading) {
            missing.push(format!("docs/operations.md has `### {heading}`, which is no alarm or rule of the template"));
        }
    }
    assert!(missing.is_empty(), "runbook links missing:\n{}", missing.join("\n"));
}

#[test]
fn the_task_failed_rule_reports_service_tasks_that_fail_or_never_start_as_text() {
    let template = test_support::deploy_template();
    let (_, rule) =
        of_type(&template, "AWS::Events::Rule").into_iter().find(|(id, _)| *id == "TaskFailedRule").unwrap();
    let detail = &rule["EventPattern"]["detail"];
    let groups = strings(&detail["group"]);
    for service in ["ProducerService", "ConsumerService", "TableWriterService"] {
        assert!(groups.contains(&format!("service:${{{service}.Name}}")), "the rule matches {service}: {groups:?}");
    }
    assert_eq!(groups.len(), 3, "operators' one-off tasks and the status task are not services' failures");
    assert_eq!(strings(&detail["lastStatus"]), ["STOPPED"]);
    let alternatives = detail["$or"].as_sequence().expect("an $or of failed and never started");
    let failed = alternatives.iter().any(|a| a["containers"]["exitCode"][0]["anything-but"] == 0);
    let never_started = alternatives.iter().any(|a| strings(&a["stopCode"]) == ["TaskFailedToStart"]);
    assert!(failed && never_started, "{alternatives:?}");
    // The e-mail is readable text, not the event's JSON.
    for t in rule["Targets"].as_sequence().unwrap() {
        let transformer = &t["InputTransformer"];
        let paths = transformer["InputPathsMap"].as_mapping().expect("an InputPathsMap");
        let template_text = strings(&transformer["InputTemplate"]).join(" ");
        assert!(template_text.starts_with('"') && template_text.ends_with('"'), "a text template: {template_text}");
        for (name, path) in paths {
            let name = name.as_str().unwrap();
            assert!(path.as_str().unwrap().starts_with("$.detail."), "{name}: {path:?}");
            assert!(template_text.contains(&format!("<{name}>")), "the text shows {name}");
        }
        for needed in ["$.detail.group", "$.detail.taskArn", "$.detail.stopCode", "$.detail.stoppedReason"] {
            assert!(paths.values().any(|p| p == needed), "the text shows {needed}");
        }
    }
    // Deploys that keep failing roll back instead.
    for (id, service) in of_type(&template, "AWS::ECS::Service") {
        let breaker = &service["DeploymentConfiguration"]["DeploymentCircuitBreaker"];
        assert_eq!((&breaker["Enable"], &breaker["Rollback"]), (&Value::from(true), &Value::from(true)), "{id}");
    }
}

#[test]
fn each_task_role_grants_what_its_work_needs_and_no_more() {
    let template = test_support::deploy_template();
    let ledger = "zuora-lake-export/ledger/";
    let producers_records = ["requests/", "jobs/", "session/"];
    let record = |kind: &str| format!("{RAW_OBJECTS}{ledger}{kind}x.json");

    // The status task reads the marks (and decrypts them): no queue, no write, no secret.
    let status = allowed(&template, "StatusTaskRole");
    assert!(!status.is_empty());
    for (action, resources) in &status {
        assert!(["s3:GetObject", "s3:ListBucket", "kms:Decrypt"].contains(&action.as_str()), "status may {action}");
        if action == "s3:GetObject" {
            assert!(resources.iter().all(|r| r.contains(&format!("/{ledger}published/"))), "{resources:?}");
        }
        if action == "kms:Decrypt" {
            assert!(resources.iter().any(|r| r == "BucketKey"), "{resources:?}");
        }
    }
    let tasks = of_type(&template, "AWS::ECS::TaskDefinition");
    let task = |id: &str| tasks.iter().find(|(t, _)| *t == id).unwrap_or_else(|| panic!("no {id}")).1;
    assert_eq!(target(&task("StatusTaskDefinition")["TaskRoleArn"]), Some("StatusTaskRole"));
    assert!(task("StatusTaskDefinition")["ContainerDefinitions"][0]["Secrets"].is_null(), "status gets no secret");

    // The producer writes only its own ledger records, and never redrives (operators do).
    for (action, resources) in allowed(&template, "ProducerTaskRole") {
        if action.starts_with("s3:Put") {
            // And probe/: the start-up proof that the ledger's store honours conditional writes.
            let own =
                |r: &String| producers_records.iter().chain(&["probe/"]).any(|p| r.contains(&format!("/{ledger}{p}")));
            assert!(resources.iter().all(own), "the producer may {action} on {resources:?}");
        }
        assert!(!action.contains("MessageMoveTask"), "the producer service may {action}");
        if ["sqs:ReceiveMessage", "sqs:DeleteMessage"].contains(&action.as_str()) {
            assert!(!resources.iter().any(|r| r.ends_with("DeadLetterQueue")), "the producer may {action} on a DLQ");
        }
    }

    // The consumer writes every catalogue object's files and metadata (one grant on the bucket's objects: objects
    // are data), the published marks, and the old export's buckets when it replaces it; not the producer's records.
    for (object, key) in catalogue_keys() {
        for file in [key.clone(), format!("{key}.metadata.json")] {
            let arn = format!("{RAW_OBJECTS}{file}");
            assert!(
                grants(&template, "ConsumerTaskRole", "s3:PutObject", &arn),
                "the consumer may not write {object}: {arn}"
            );
        }
    }
    let mark = format!("{RAW_OBJECTS}{ledger}published/Account/x.json");
    assert!(grants(&template, "ConsumerTaskRole", "s3:PutObject", &mark));
    for (action, resources) in allowed(&template, "ConsumerTaskRole") {
        if action.starts_with("s3:Put") {
            for resource in resources {
                let raw = resource == format!("{RAW_OBJECTS}*");
                let old = resource.contains("${OldExportBucketPattern}");
                assert!(raw || old, "the consumer may {action} on {resource}");
            }
        }
    }
    for kind in producers_records {
        for action in ["s3:PutObject", "s3:DeleteObject"] {
            assert!(
                denies(&template, "ConsumerTaskRole", action, &record(kind)),
                "consumer not denied {action} {kind}"
            );
        }
    }

    // The table writer takes its own queue's completions, reads the files, writes only the tables (docs/tables.md).
    let writer = "TableWriterTaskRole";
    assert!(grants(&template, writer, "sqs:ReceiveMessage", "TablesQueue"));
    assert!(grants(&template, writer, "sqs:SendMessage", "TablesDeadLetterQueue"));
    let (_, key) = &catalogue_keys()[0];
    assert!(grants(&template, writer, "s3:GetObject", &format!("{RAW_OBJECTS}{key}")), "the writer reads the files");
    let commit = format!("{RAW_OBJECTS}tables/Account/_delta_log/00000000000000000001.json");
    assert!(grants(&template, writer, "s3:PutObject", &commit), "the writer commits");
    for (action, resources) in allowed(&template, writer) {
        if action.starts_with("s3:Put") || action == "s3:DeleteObject" {
            assert_eq!(resources, [format!("{RAW_OBJECTS}tables/*")], "the writer may {action} on {resources:?}");
        }
        if action.starts_with("sqs:") && action != "sqs:SendMessage" {
            assert!(resources.iter().all(|r| r.contains("TablesQueue")), "the writer may {action} on {resources:?}");
        }
    }
    // It registers each table in the stack's Glue database, and may touch no other.
    let glue = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:";
    for resource in ["catalog", "database/${TablesGlueDatabase}", "table/${TablesGlueDatabase}/account"] {
        for action in ["glue:GetTable", "glue:CreateTable"] {
            assert!(grants(&template, writer, action, &format!("{glue}{resource}")), "{action} on {resource}");
        }
    }
    assert!(!grants(&template, writer, "glue:CreateTable", &format!("{glue}table/other/account")));
    let database = &resources(&template)["TablesDatabase"];
    assert_eq!(database["Type"], "AWS::Glue::Database");
    assert_eq!(target(&database["Properties"]["DatabaseInput"]["Name"]), Some("TablesGlueDatabase"));
    assert_eq!(target(&task("TableWriterTaskDefinition")["TaskRoleArn"]), Some(writer));
    let container = &task("TableWriterTaskDefinition")["ContainerDefinitions"][0];
    assert_eq!(strings(&container["Command"]), ["table-writer"]);
    assert!(container["Secrets"].is_null(), "the writer gets no secret");

    // The operator: `producer submit` (the ledger as the producer service has it, the jobs queue), `backfill` (the
    // requests queue), `redrive --queue requests|jobs|lake|tables [--dry-run]`, `status` and `audit [--repair]`.
    let operator = "OperatorTaskRole";
    for (dlq, source) in [
        ("RequestsDeadLetterQueue", "RequestsQueue"),
        ("JobsDeadLetterQueue", "JobsQueue"),
        ("LakeDeadLetterQueue", "LakeQueue"),
        ("TablesDeadLetterQueue", "TablesQueue"),
    ] {
        for action in [
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
            "sqs:StartMessageMoveTask",
            "sqs:ListMessageMoveTasks",
        ] {
            assert!(grants(&template, operator, action, dlq), "the operator may not {action} on {dlq}");
        }
        for action in ["sqs:SendMessage", "sqs:GetQueueAttributes"] {
            assert!(grants(&template, operator, action, source), "the operator may not {action} on {source}");
        }
        for action in ["sqs:ReceiveMessage", "sqs:DeleteMessage"] {
            assert!(!grants(&template, operator, action, source), "the operator may {action} on {source}");
        }
    }
    for kind in producers_records {
        assert!(grants(&template, operator, "s3:PutObject", &record(kind)), "the operator may not write {kind}");
    }
    assert!(grants(&template, operator, "s3:GetObject", &record("published/Account/")), "status reads the marks");
    // `audit` reads the lake's files and, with --repair, publishes a file of deletions: the raw bucket's objects,
    // nothing beyond them.
    for (action, resources) in allowed(&template, operator) {
        if action.starts_with("s3:Put") || action.starts_with("s3:Get") {
            assert_eq!(resources, [format!("{RAW_OBJECTS}*")], "the operator may {action} on {resources:?}");
        }
    }
    // Its task: the deployed image and configuration, the Zuora secret (submit calls Zuora), its own log streams.
    let operator_task = task("OperatorTaskDefinition");
    assert_eq!(target(&operator_task["TaskRoleArn"]), Some(operator));
    let container = &operator_task["ContainerDefinitions"][0];
    assert_eq!(container["Name"], "operator");
    assert_eq!(container["ReadonlyRootFilesystem"], Value::from(true));
    assert_eq!(container["Secrets"][0]["Name"], "ZUORA_CLIENT_SECRET");
    assert_eq!(container["LogConfiguration"]["Options"]["awslogs-stream-prefix"], "operator");
    assert_eq!(strings(&container["Command"]), ["producer", "status"]);

    // Every task gets the same configuration (the template repeats it; a copy that drifts is a bug).
    let environments: Vec<(&str, &Value)> =
        tasks.iter().map(|(id, t)| (*id, &t["ContainerDefinitions"][0]["Environment"])).collect();
    assert!(environments.len() >= 4);
    for (id, environment) in &environments {
        assert_eq!(*environment, environments[0].1, "{id}'s ZLE_CONFIG_TOML differs from {}'s", environments[0].0);
    }

    // Nobody in the stack takes messages off the lake queue: they are the lake's.
    for role in ["ProducerTaskRole", "ConsumerTaskRole", "StatusTaskRole", "SchedulerRole", operator, writer] {
        for (action, resources) in allowed(&template, role) {
            let takes =
                ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"].contains(&action.as_str());
            assert!(!(takes && resources.iter().any(|r| r == "LakeQueue")), "{role} may {action} on the lake queue");
        }
    }
}

#[test]
fn the_queues_and_the_bucket_use_the_stacks_rotated_keys_and_every_role_may_use_them() {
    let template = test_support::deploy_template();
    for key in ["QueueKey", "BucketKey"] {
        let resource = &resources(&template)[key];
        assert_eq!(resource["Type"], "AWS::KMS::Key", "{key} is customer-managed");
        assert_eq!(resource["Properties"]["EnableKeyRotation"], Value::from(true), "{key} rotates");
    }
    // The bucket outlives the stack; so must the key its objects are encrypted with.
    assert_eq!(resources(&template)["RawBucket"]["DeletionPolicy"], "Retain");
    assert_eq!(resources(&template)["BucketKey"]["DeletionPolicy"], "Retain");

    let queues = of_type(&template, "AWS::SQS::Queue");
    assert!(queues.len() >= 7);
    for (id, queue) in &queues {
        assert_eq!(target(&queue["KmsMasterKeyId"]), Some("QueueKey"), "{id} is not encrypted with QueueKey");
    }
    let (_, bucket) = of_type(&template, "AWS::S3::Bucket")[0];
    let encryption = &bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0];
    assert_eq!(encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"], "aws:kms");
    assert_eq!(target(&encryption["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]), Some("BucketKey"));
    assert_eq!(encryption["BucketKeyEnabled"], Value::from(true));

    // A role that sends or receives encrypted messages may use QueueKey; one that reads the bucket may decrypt with
    // BucketKey, and one that writes it may also generate data keys.
    let roles = ["ProducerTaskRole", "ConsumerTaskRole", "StatusTaskRole", "OperatorTaskRole", "SchedulerRole"];
    for role in roles.into_iter().chain(["TableWriterTaskRole"]) {
        let grants_of = allowed(&template, role);
        let on_queues = grants_of.iter().any(|(a, _)| a.starts_with("sqs:"));
        let reads_raw =
            grants_of.iter().any(|(a, r)| a == "s3:GetObject" && r.iter().any(|r| r.starts_with(RAW_OBJECTS)));
        let writes_raw =
            grants_of.iter().any(|(a, r)| a == "s3:PutObject" && r.iter().any(|r| r.starts_with(RAW_OBJECTS)));
        let uses = |action: &str, key: &str| grants(&template, role, action, key);
        if on_queues {
            assert!(uses("kms:GenerateDataKey", "QueueKey") && uses("kms:Decrypt", "QueueKey"), "{role}: QueueKey");
        } else {
            assert!(!uses("kms:Decrypt", "QueueKey"), "{role} uses no queue but may decrypt with QueueKey");
        }
        if reads_raw || writes_raw {
            assert!(uses("kms:Decrypt", "BucketKey"), "{role}: kms:Decrypt on BucketKey");
        }
        assert_eq!(uses("kms:GenerateDataKey", "BucketKey"), writes_raw, "{role}: kms:GenerateDataKey on BucketKey");
        // Each key statement names its key: no kms:* on every key of the account.
        for (action, resources) in grants_of.iter().filter(|(a, _)| a.starts_with("kms:")) {
            assert!(resources.iter().all(|r| r != "*"), "{role} may {action} on every key");
        }
    }
    assert!(grants(&template, "SchedulerRole", "sqs:SendMessage", "ScheduleDeadLetterQueue"));
}

#[test]
fn a_lake_in_another_account_may_take_its_completions_read_the_files_and_decrypt_but_not_the_exporters_records() {
    let template = test_support::deploy_template();
    let condition = &template["Conditions"]["LakeAccount"];
    assert!(format!("{condition:?}").contains("LakeAccountId"), "LakeAccount: {condition:?}");
    let lake = |s: &Value| strings(&s["Principal"]["AWS"]).iter().any(|p| p == LAKE_ROOT);

    // The lake queue's policy lets it receive; its DLQ's lets it look. The queues' policies allow nothing else.
    let policies = of_type(&template, "AWS::SQS::QueuePolicy");
    let queue_grants = |queue: &str| -> BTreeSet<String> {
        let mut granted = BTreeSet::new();
        for (id, policy) in &policies {
            if policy["Queues"].as_sequence().unwrap().iter().any(|q| target(q) == Some(queue)) {
                for (condition, s) in conditional_statements(&policy["PolicyDocument"]) {
                    assert!(s["Effect"] != "Allow" || lake(s), "{id} allows someone else: {s:?}");
                    if lake(s) {
                        assert_eq!(condition, Some("LakeAccount"), "{id}: {s:?} only with a lake account");
                    }
                    if s["Effect"] == "Allow" && lake(s) && statement_resources(s).iter().any(|r| r == queue) {
                        granted.extend(actions(s));
                    }
                }
            }
        }
        granted
    };
    let on_queue = queue_grants("LakeQueue");
    for action in ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"] {
        assert!(on_queue.contains(action), "the lake may not {action} on the lake queue: {on_queue:?}");
    }
    let on_dlq = queue_grants("LakeDeadLetterQueue");
    assert!(on_dlq.contains("sqs:ReceiveMessage") && !on_dlq.contains("sqs:DeleteMessage"), "{on_dlq:?}");

    // The bucket's policy: the files, not the exporter's records.
    let bucket_policy = &resources(&template)["RawBucketPolicy"]["Properties"]["PolicyDocument"];
    let bucket_statements = conditional_statements(bucket_policy);
    let lakes: Vec<&Value> = bucket_statements
        .iter()
        .filter(|(_, s)| lake(s))
        .map(|(condition, s)| {
            assert_eq!(*condition, Some("LakeAccount"), "{s:?} only with a lake account");
            *s
        })
        .collect();
    let lake_may = |action: &str, arn: &str, effect: &str| {
        lakes.iter().any(|s| {
            s["Effect"] == effect
                && actions(s).iter().any(|a| covers(a, action))
                && statement_resources(s).iter().any(|r| covers(r, arn))
        })
    };
    let keys = catalogue_keys();
    let (_, key) = &keys[0];
    assert!(lake_may("s3:GetObject", &format!("{RAW_OBJECTS}{key}"), "Allow"), "the lake reads the files");
    let table_file = format!("{RAW_OBJECTS}tables/Account/_delta_log/00000000000000000000.json");
    assert!(lake_may("s3:GetObject", &table_file, "Allow") && !lake_may("s3:GetObject", &table_file, "Deny"), "tables");
    assert!(lake_may("s3:ListBucket", "arn:${AWS::Partition}:s3:::${RawBucketName}", "Allow"), "the lake lists them");
    for kind in ["requests/", "jobs/", "session/", "published/Account/", "published-jobs/"] {
        let records = format!("{RAW_OBJECTS}zuora-lake-export/ledger/{kind}x.json");
        assert!(lake_may("s3:GetObject", &records, "Deny"), "the lake is denied the exporter's {kind} records");
    }

    // It lists under the objects' prefixes and the tables (a Delta reader lists _delta_log/), never the whole
    // bucket nor a prefix that would list the exporter's records (moto evaluates no s3:prefix: read here).
    let bucket = "arn:${AWS::Partition}:s3:::${RawBucketName}";
    let lake_may_list = |prefix: Option<&str>| {
        let (mut allowed, mut denied) = (false, false);
        for s in &lakes {
            let lists = actions(s).iter().any(|a| covers(a, "s3:ListBucket"));
            if lists && statement_resources(s).iter().any(|r| r == bucket) && prefix_conditions_hold(s, prefix) {
                allowed |= s["Effect"] == "Allow";
                denied |= s["Effect"] == "Deny";
            }
        }
        allowed && !denied
    };
    let (object, _) = &keys[0];
    for prefix in [format!("{object}/"), format!("{object}/2026-12-04/"), "tables/".to_owned()] {
        assert!(lake_may_list(Some(prefix.as_str())), "the lake may not list {prefix}");
    }
    assert!(lake_may_list(Some("tables/Account/_delta_log/")), "the lake may not list a table's log");
    for prefix in [None, Some(""), Some("z"), Some("zuora-lake-export"), Some("zuora-lake-export/")] {
        assert!(!lake_may_list(prefix), "the lake may list the bucket with prefix {prefix:?}");
    }
    for kind in ["ledger/", "ledger/requests/", "ledger/published/Account/", "ledger/published-jobs/"] {
        let prefix = format!("zuora-lake-export/{kind}");
        assert!(!lake_may_list(Some(prefix.as_str())), "the lake may list {prefix}");
    }

    // Both keys let the lake decrypt, through their service only, and only what the lake reads: the encryption
    // context names the lake queue and its DLQ, or the raw bucket (moto evaluates no key policy: read here).
    let arn_of = |queue: &str| {
        let name = strings(&resources(&template)[queue]["Properties"]["QueueName"]);
        assert_eq!(name.len(), 1, "{queue}: {name:?}");
        format!("arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:${{AWS::AccountId}}:{}", name[0])
    };
    let contexts = [
        ("QueueKey", "sqs", vec![arn_of("LakeQueue"), arn_of("LakeDeadLetterQueue")]),
        ("BucketKey", "s3", vec![bucket.to_owned(), format!("{bucket}/*")]),
    ];
    for (key, service, arns) in contexts {
        let policy = &resources(&template)[key]["Properties"]["KeyPolicy"];
        let statement = conditional_statements(policy)
            .into_iter()
            .find(|(_, s)| lake(s))
            .unwrap_or_else(|| panic!("{key}'s policy does not name the lake account"));
        assert_eq!(statement.0, Some("LakeAccount"));
        assert!(actions(statement.1).contains("kms:Decrypt"), "{key}");
        let via = strings(&statement.1["Condition"]["StringEquals"]["kms:ViaService"]);
        assert_eq!(via, [format!("{service}.${{AWS::Region}}.amazonaws.com")], "{key}");
        let context = format!("kms:EncryptionContext:aws:{service}:arn");
        let conditions = statement.1["Condition"].as_mapping().unwrap();
        let named: BTreeSet<String> =
            conditions.values().flat_map(|operands| strings(&operands[context.as_str()])).collect();
        assert_eq!(named, arns.into_iter().collect::<BTreeSet<String>>(), "{key}: {context}");
        // Every statement of the key's policy for a principal of another account carries such a condition.
        for (_, s) in conditional_statements(policy) {
            let others = strings(&s["Principal"]["AWS"]).iter().any(|p| !p.contains("${AWS::AccountId}"));
            let limited =
                s["Condition"].as_mapping().is_some_and(|c| c.values().any(|k| !k[context.as_str()].is_null()));
            assert!(!others || limited, "{key} lets another account use it for anything: {s:?}");
        }
    }
}

#[test]
fn the_outputs_name_what_the_runbook_and_the_lake_need() {
    let template = test_support::deploy_template();
    let outputs = template["Outputs"].as_mapping().unwrap();
    for name in [
        "RequestsQueueUrl",
        "RequestsQueueArn",
        "RequestsDeadLetterQueueUrl",
        "RequestsDeadLetterQueueArn",
        "JobsQueueUrl",
        "JobsQueueArn",
        "JobsDeadLetterQueueUrl",
        "JobsDeadLetterQueueArn",
        "LakeQueueUrl",
        "LakeQueueArn",
        "LakeDeadLetterQueueUrl",
        "LakeDeadLetterQueueArn",
        "TablesQueueUrl",
        "TablesDeadLetterQueueUrl",
        "TablesDeadLetterQueueArn",
        "TablesLocation",
        "TablesGlueDatabase",
        "ScheduleDeadLetterQueueUrl",
        "ScheduleDeadLetterQueueArn",
        "RawBucketName",
        "QueueKeyArn",
        "BucketKeyArn",
        "LogGroupName",
        "ClusterName",
        "ProducerServiceName",
        "ConsumerServiceName",
        "TableWriterServiceName",
        "OperatorTaskDefinitionArn",
        "StatusTaskDefinitionArn",
        "TaskNetworkConfiguration",
        "AlarmTopicArn",
    ] {
        let output = outputs.get(name).unwrap_or_else(|| panic!("no output {name}"));
        assert!(output["Description"].as_str().is_some_and(|d| !d.is_empty()), "{name} has no Description");
        assert!(!output["Value"].is_null(), "{name} has no Value");
    }
}

#[test]
fn the_dashboard_shows_every_embedded_metric_and_the_queues() {
    let template = test_support::deploy_template();
    let dashboards = of_type(&template, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1);
    let (tag, body) = tagged(&dashboards[0].1["DashboardBody"]).expect("a !Sub body");
    assert_eq!(tag, "!Sub");
    let source = body.as_str().unwrap();
    for queue in
        of_type(&template, "AWS::SQS::Queue").into_iter().map(|(id, _)| id).filter(|id| id.ends_with("DeadLetterQueue"))
    {
        assert!(source.contains(&format!("${{{queue}.QueueName}}")), "the dashboard lacks {queue}");
    }
    // As CloudFormation renders it: every ${...} replaced by a value.
    let mut text = source.to_owned();
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
    for role in ["ProducerTaskRole", "StatusTaskRole", "ConsumerTaskRole", "OperatorTaskRole", "TableWriterTaskRole"] {
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

#[test]
fn every_scheduled_request_is_one_the_producer_accepts_and_the_lookback_is_off_unless_given() {
    let template = test_support::deploy_template();
    let catalogue = common::catalogue::Catalogue::builtin();
    let names: Vec<&str> = catalogue.objects.iter().map(|o| o.name.as_str()).collect();
    let mut sent = Vec::new();
    for (id, schedule) in resources(&template).iter().filter(|(_, r)| r["Type"] == "AWS::Scheduler::Schedule") {
        let Some(input) = schedule["Properties"]["Target"]["Input"].as_str() else { continue };
        let request = common::messages::ExportRequest::parse(input, &names, chrono::Utc::now())
            .unwrap_or_else(|e| panic!("{id:?}: {e}"));
        sent.push((id.as_str().unwrap(), request.export_from_date.to_string(), schedule["Condition"].as_str()));
    }
    sent.sort();
    assert_eq!(
        sent,
        [
            ("DailyExport", "afterLastIncrement".to_owned(), None),
            ("LookbackExport", "lookback".to_owned(), Some("Lookback"))
        ]
    );
    assert_eq!(template["Parameters"]["LookbackScheduleExpression"]["Default"], "");
}

#[test]
fn completion_pushed_is_a_secret_rate_limited_route_straight_to_the_jobs_queue_and_off_without_a_secret() {
    let template = test_support::deploy_template();
    let push: Vec<(&str, &Value)> = resources(&template)
        .iter()
        .filter(|(_, r)| r["Condition"] == "Push")
        .map(|(id, r)| (id.as_str().unwrap(), r))
        .collect();
    let ids: BTreeSet<&str> = push.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        BTreeSet::from([
            "NotificationsIgnoredAlarm",
            "NotifyApi",
            "NotifyIntegration",
            "NotifyRole",
            "NotifyRoute",
            "NotifyServerErrorsAlarm",
            "NotifyStage",
            "NotifyUrlSecret"
        ])
    );
    assert_eq!(template["Parameters"]["NotifySecret"]["Default"], "", "off unless a secret is given");
    assert_eq!(template["Parameters"]["NotifySecret"]["NoEcho"], Value::from(true));
    let props = |id: &str| &push.iter().find(|(i, _)| *i == id).unwrap().1["Properties"];

    // No code in the path: API Gateway sends the call's `job` parameter to the jobs queue with a constant origin
    // attribute (the consumer reads whatever carries it as a job id, nothing else), with a role that may do that
    // and nothing else.
    let integration = props("NotifyIntegration");
    assert_eq!(
        (&integration["IntegrationType"], &integration["IntegrationSubtype"]),
        (&Value::from("AWS_PROXY"), &Value::from("SQS-SendMessage"))
    );
    assert_eq!(target(&integration["RequestParameters"]["QueueUrl"]), Some("JobsQueue"));
    assert_eq!(integration["RequestParameters"]["MessageBody"], "$request.querystring.job");
    let attributes: Value =
        serde_json::from_str(integration["RequestParameters"]["MessageAttributes"].as_str().unwrap()).unwrap();
    let origin = &attributes[common::messages::ORIGIN_ATTRIBUTE];
    assert_eq!(
        (&origin["DataType"], &origin["StringValue"]),
        (&Value::from("String"), &Value::from(common::messages::NOTIFY_ORIGIN))
    );
    assert_eq!(target(&integration["CredentialsArn"]), Some("NotifyRole"));
    let granted = allowed(&template, "NotifyRole");
    let actions: BTreeSet<&str> = granted.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, BTreeSet::from(["kms:Decrypt", "kms:GenerateDataKey", "sqs:SendMessage"]));
    assert!(grants(&template, "NotifyRole", "sqs:SendMessage", "JobsQueue"));
    for queue in ["RequestsQueue", "LakeQueue", "JobsDeadLetterQueue"] {
        assert!(!grants(&template, "NotifyRole", "sqs:SendMessage", queue), "the route may send to {queue}");
    }
    // The secret is the path; the stage is throttled; its access log leaves the path out.
    let route = props("NotifyRoute");
    assert_eq!(strings(&route["RouteKey"]), ["GET /${NotifySecret}/job-finished"]);
    let stage = props("NotifyStage");
    let limits = &stage["DefaultRouteSettings"];
    assert!(limits["ThrottlingRateLimit"].as_u64().is_some_and(|r| r > 0 && r <= 10), "{limits:?}");
    assert!(limits["ThrottlingBurstLimit"].as_u64().is_some_and(|b| b > 0 && b <= 50), "{limits:?}");
    assert!(!stage["AccessLogSettings"]["Format"].as_str().unwrap().contains("path"));
    assert!(!stage["AccessLogSettings"]["Format"].as_str().unwrap().contains("routeKey"));
    // The whole URL lives in a secret the tasks that submit jobs read; no configuration holds it.
    let secret = strings(&props("NotifyUrlSecret")["SecretString"]).join(" ");
    assert!(secret.contains("/${NotifySecret}/job-finished?job=${!JOBID}"), "{secret}");
    let rendered = serde_yaml::to_string(&template).unwrap();
    assert!(!rendered.contains("notify_url"), "a configuration of the template names the notify URL");
}

#[test]
fn the_zuora_base_url_parameter_takes_zuoras_data_centres_only() {
    let template = test_support::deploy_template();
    let parameter = &template["Parameters"]["ZuoraBaseUrl"];
    // CloudFormation matches the whole value (Java's regex; this pattern uses nothing the two read differently).
    let pattern = regex::Regex::new(parameter["AllowedPattern"].as_str().unwrap()).unwrap();
    let accepts = |url: &str| pattern.is_match(url);
    let table = std::fs::read_to_string(test_support::tests_dir().join("../docs/configuration.md")).unwrap();
    let hosts: Vec<&str> = table
        .lines()
        .filter_map(|l| l.split(" | ").nth(1))
        .filter_map(|cell| cell.strip_prefix('`')?.strip_suffix('`'))
        .filter(|cell| cell.starts_with("https://"))
        .collect();
    assert!(hosts.len() >= 10, "{hosts:?}");
    for host in hosts {
        assert!(accepts(host), "{host} is a data centre the template refuses");
    }
    for other in ["https://rest.zuora.com.example.net", "http://rest.zuora.com", "https://example.net"] {
        assert!(!accepts(other), "{other}");
    }
    assert!(accepts(parameter["Default"].as_str().unwrap()));
}

#[test]
fn every_role_may_be_assumed_only_by_its_service_for_this_account() {
    let template = test_support::deploy_template();
    let roles = of_type(&template, "AWS::IAM::Role");
    assert!(roles.len() >= 9, "{}", roles.len());
    for (id, role) in &roles {
        let trust = role["AssumeRolePolicyDocument"]["Statement"].as_sequence();
        let trust = trust.unwrap_or_else(|| panic!("{id} has no trust statements"));
        for statement in trust {
            assert_eq!(statement["Action"], "sts:AssumeRole", "{id}");
            assert!(!strings(&statement["Principal"]["Service"]).is_empty(), "{id} trusts no service: {statement:?}");
            // The confused deputy: a service acting for another account cannot take the role.
            let account = &statement["Condition"]["StringEquals"]["aws:SourceAccount"];
            assert!(is_this_account(account), "{id}'s trust has no aws:SourceAccount of this account: {statement:?}");
            for arn in strings(&statement["Condition"]["ArnLike"]["aws:SourceArn"]) {
                assert!(arn.contains(":${AWS::AccountId}:"), "{id}'s aws:SourceArn is another account's: {arn}");
            }
        }
    }
}

#[test]
fn every_queue_and_the_bucket_refuse_calls_without_tls() {
    let template = test_support::deploy_template();
    let policies = of_type(&template, "AWS::SQS::QueuePolicy");
    let queues = of_type(&template, "AWS::SQS::Queue");
    assert!(queues.len() >= 9, "{}", queues.len());
    for (queue, _) in &queues {
        // A queue has one policy: a second QueuePolicy naming it would replace the first.
        let covering: Vec<&str> = policies
            .iter()
            .filter(|(_, p)| p["Queues"].as_sequence().unwrap().iter().any(|q| target(q) == Some(*queue)))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(covering.len(), 1, "{queue} is named by the queue policies {covering:?}");
        let id = covering[0];
        assert!(resources(&template)[id]["Condition"].is_null(), "{id} exists whatever the parameters");
        let document = &resources(&template)[id]["Properties"]["PolicyDocument"];
        let tls_only = conditional_statements(document).into_iter().any(|(condition, s)| {
            condition.is_none() && refuses_plain_http(s, "sqs") && statement_resources(s).iter().any(|r| r == queue)
        });
        assert!(tls_only, "{id} does not refuse calls to {queue} without TLS");
    }

    // The bucket: no call without TLS, and none below TLS 1.2, on the bucket and on its objects.
    let bucket = "arn:${AWS::Partition}:s3:::${RawBucketName}";
    let policy = &resources(&template)["RawBucketPolicy"]["Properties"]["PolicyDocument"];
    let statements = conditional_statements(policy);
    let everywhere = |s: &Value| {
        let named = statement_resources(s);
        named.iter().any(|r| r == bucket) && named.iter().any(|r| *r == format!("{bucket}/*"))
    };
    let tls_only = statements.iter().any(|&(c, s)| c.is_none() && refuses_plain_http(s, "s3") && everywhere(s));
    assert!(tls_only, "the bucket's policy does not refuse calls without TLS");
    let floor = statements.iter().any(|&(c, s)| {
        let version = &s["Condition"]["NumericLessThan"]["s3:TlsVersion"];
        let below_1_2 = version.as_f64().is_some_and(|v| (v - 1.2).abs() < 1e-9) || version.as_str() == Some("1.2");
        let denied_to_all = s["Effect"] == "Deny" && s["Principal"] == "*" && actions(s).contains("s3:*");
        c.is_none() && denied_to_all && below_1_2 && everywhere(s)
    });
    assert!(floor, "the bucket's policy does not refuse TLS older than 1.2 (s3:TlsVersion)");
}

#[test]
fn only_the_tasks_that_call_zuora_may_read_its_secret_and_only_the_submitters_the_notify_url() {
    let template = test_support::deploy_template();
    let tasks = of_type(&template, "AWS::ECS::TaskDefinition");
    let task = |id: &str| tasks.iter().find(|(t, _)| *t == id).unwrap_or_else(|| panic!("no {id}")).1;
    for (id, role) in [
        ("ProducerTaskDefinition", "SubmitterExecutionRole"),
        ("OperatorTaskDefinition", "SubmitterExecutionRole"),
        ("ConsumerTaskDefinition", "ZuoraExecutionRole"),
        ("StatusTaskDefinition", "PlainExecutionRole"),
        ("TableWriterTaskDefinition", "PlainExecutionRole"),
    ] {
        assert_eq!(target(&task(id)["ExecutionRoleArn"]), Some(role), "{id}'s execution role");
    }

    // Each execution role may read exactly the secrets its tasks are given (ECS reads them into the task).
    let mut read_by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, definition) in &tasks {
        let role = target(&definition["ExecutionRoleArn"]).unwrap_or_else(|| panic!("{id}: no execution role"));
        let mut secrets = BTreeSet::new();
        for container in definition["ContainerDefinitions"].as_sequence().unwrap() {
            references(&container["Secrets"], &mut secrets);
        }
        read_by.entry(role.to_owned()).or_default().extend(secrets);
    }
    assert_eq!(read_by.len(), 3, "{read_by:?}");
    for (role, secrets) in &read_by {
        let mut granted = BTreeSet::new();
        for s in inline_statements(&template, role) {
            if actions(s).iter().any(|a| a.starts_with("secretsmanager:")) {
                assert_eq!(s["Effect"], "Allow", "{role}: {s:?}");
                assert_eq!(actions(s), BTreeSet::from(["secretsmanager:GetSecretValue".to_owned()]), "{role}");
                references(&s["Resource"], &mut granted);
            }
        }
        assert_eq!(&granted, secrets, "{role} may read other secrets than its tasks are given");
        // The managed policy pulls the image and writes the logs; it reads no secret.
        let managed = strings(&resources(&template)[role.as_str()]["Properties"]["ManagedPolicyArns"]);
        let execution_policy = "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";
        assert_eq!(managed, [execution_policy], "{role}");
    }
    // The status task and the table writer never call Zuora: their role reads no secret at all.
    assert!(inline_statements(&template, "PlainExecutionRole").is_empty(), "the plain execution role has a policy");
    assert!(read_by["PlainExecutionRole"].is_empty(), "{:?}", read_by["PlainExecutionRole"]);
    assert_eq!(read_by["ZuoraExecutionRole"], BTreeSet::from(["ZuoraClientSecretArn".to_owned()]));
    let submitters = &read_by["SubmitterExecutionRole"];
    assert!(submitters.contains("ZuoraClientSecretArn") && submitters.contains("NotifyUrlSecret"), "{submitters:?}");

    // The notify URL's secret exists with completion pushed only, and only the producer and operator name it.
    let secret = resources(&template).get("NotifyUrlSecret").expect("a NotifyUrlSecret resource");
    assert_eq!(secret["Type"], "AWS::SecretsManager::Secret");
    assert_eq!(secret["Condition"], "Push");
    for (id, definition) in &tasks {
        let names = format!("{definition:?}").contains("NotifyUrlSecret");
        let submitter = ["ProducerTaskDefinition", "OperatorTaskDefinition"].contains(id);
        assert!(!names || submitter, "{id} names NotifyUrlSecret");
    }
    // And its grant is there only with completion pushed, in the submitters' execution role.
    for role in ["SubmitterExecutionRole", "ZuoraExecutionRole"] {
        let policies = resources(&template)[role]["Properties"]["Policies"].as_sequence().unwrap();
        for (condition, statement) in policies.iter().flat_map(|p| conditional_statements(&p["PolicyDocument"])) {
            let mut named = BTreeSet::new();
            references(&statement["Resource"], &mut named);
            if named.contains("NotifyUrlSecret") {
                assert_eq!((role, condition), ("SubmitterExecutionRole", Some("Push")), "{statement:?}");
            }
        }
    }
}

#[test]
fn only_the_table_writer_writes_the_tables_and_only_the_consumer_the_marks() {
    let template = test_support::deploy_template();
    let ledger = format!("{RAW_OBJECTS}zuora-lake-export/ledger/");
    let table_files = [
        format!("{RAW_OBJECTS}tables/Account/_delta_log/00000000000000000001.json"),
        format!("{RAW_OBJECTS}tables/Account/part-00000.parquet"),
    ];
    let marks = [format!("{ledger}published/Account/x.json"), format!("{ledger}published-jobs/job.json")];
    let roles = ["ProducerTaskRole", "ConsumerTaskRole", "StatusTaskRole", "OperatorTaskRole", "TableWriterTaskRole"];
    for role in roles {
        // Moto evaluates no condition but does evaluate an explicit Deny; this reads both from the template.
        let may =
            |action: &str, arn: &str| grants(&template, role, action, arn) && !denies(&template, role, action, arn);
        for action in ["s3:PutObject", "s3:DeleteObject"] {
            for file in &table_files {
                assert_eq!(may(action, file), role == "TableWriterTaskRole", "{role} {action} {file}");
            }
            for mark in &marks {
                let consumer_writes = role == "ConsumerTaskRole" && action == "s3:PutObject";
                assert_eq!(may(action, mark), consumer_writes, "{role} {action} {mark}");
            }
        }
    }
    // The operator still writes what its commands write: the producer's records (`submit`) and a file of deletions
    // with its metadata under any catalogue object's key (`audit --repair`).
    let operator = |arn: &str| {
        grants(&template, "OperatorTaskRole", "s3:PutObject", arn)
            && !denies(&template, "OperatorTaskRole", "s3:PutObject", arn)
    };
    for kind in ["requests/", "jobs/", "session/", "session/claims/"] {
        assert!(operator(&format!("{ledger}{kind}x.json")), "the operator may not write {kind}");
    }
    // Both roles that start `serve` or `submit` write the probe of conditional writes.
    let probe = format!("{ledger}probe/conditional-writes.json");
    for role in ["ProducerTaskRole", "OperatorTaskRole"] {
        let may = grants(&template, role, "s3:PutObject", &probe) && !denies(&template, role, "s3:PutObject", &probe);
        assert!(may, "{role} may not write {probe}");
    }
    for (object, key) in catalogue_keys() {
        for file in [key.clone(), format!("{key}.metadata.json")] {
            assert!(operator(&format!("{RAW_OBJECTS}{file}")), "the operator may not repair {object}: {file}");
        }
    }
}

#[test]
fn every_task_runs_the_one_image_by_digest() {
    let template = test_support::deploy_template();
    let parameter = &template["Parameters"]["ContainerImage"];
    let pattern = parameter["AllowedPattern"].as_str().expect("ContainerImage has an AllowedPattern");
    // CloudFormation matches the whole value: a tag (`repo:1.0.0`) is refused, a digest accepted.
    assert!(pattern.starts_with('^') && pattern.ends_with("@sha256:[0-9a-f]{64}$"), "{pattern}");
    assert!(parameter["Default"].is_null(), "ContainerImage has a default");
    let tasks = of_type(&template, "AWS::ECS::TaskDefinition");
    assert_eq!(tasks.len(), 5);
    for (id, task) in &tasks {
        for container in task["ContainerDefinitions"].as_sequence().unwrap() {
            assert_eq!(target(&container["Image"]), Some("ContainerImage"), "{id} runs another image");
        }
    }
}
