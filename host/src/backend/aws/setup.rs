//! `pipehost setup` on AWS: creates what the pipeline needs where missing —
//! the stream, the dead-letter and main queues (with the redrive policy),
//! the bucket (with expiry of pipehost's payloads and markers), the topic,
//! and each subscriber queue with its policy and subscription. Running it
//! again changes nothing that is already right.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::StreamStatus;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, CreateBucketConfiguration,
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
};
use aws_sdk_sqs::types::QueueAttributeName;

use super::{Clients, code_of, sdk_err};
use crate::plan::{AwsPlan, Plan};

/// SQS's longest retention: payloads and markers live as long.
const RETENTION_DAYS: i32 = 14;

pub async fn setup(plan: &Plan, aws: &AwsPlan) -> anyhow::Result<Vec<String>> {
    let c = super::clients(plan, aws).await?;
    let mut done = Vec::new();
    stream(&c, plan, &mut done).await?;
    let dlq_url = queue(&c, &plan.fixed.queue.dead_letter, plan, None, &mut done).await?;
    let dlq_arn = queue_arn(&c, &dlq_url).await?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": plan.fixed.queue.max_receives,
    })
    .to_string();
    queue(&c, &plan.fixed.queue.name, plan, Some(redrive), &mut done).await?;
    bucket(&c, aws, &mut done).await?;
    let topic_arn = c
        .sns
        .create_topic()
        .name(&plan.fixed.notifications.topic)
        .send()
        .await
        .map_err(|e| {
            sdk_err(
                "sns",
                &format!("CreateTopic {}", plan.fixed.notifications.topic),
                e,
            )
        })?
        .topic_arn()
        .unwrap_or_default()
        .to_string();
    done.push(format!(
        "topic {} ready ({topic_arn})",
        plan.fixed.notifications.topic
    ));
    for sub in &plan.fixed.notifications.subscribers {
        let url = queue(&c, sub, plan, None, &mut done).await?;
        let arn = queue_arn(&c, &url).await?;
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "topic-to-queue",
                "Effect": "Allow",
                "Principal": { "Service": "sns.amazonaws.com" },
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": { "ArnEquals": { "aws:SourceArn": topic_arn } },
            }],
        })
        .to_string();
        c.sqs
            .set_queue_attributes()
            .queue_url(&url)
            .attributes(QueueAttributeName::Policy, policy)
            .send()
            .await
            .map_err(|e| sdk_err("sqs", &format!("SetQueueAttributes {sub}"), e))?;
        let existing = subscribed(&c, &topic_arn, &arn).await?;
        if existing {
            done.push(format!(
                "subscription {} -> {sub} exists",
                plan.fixed.notifications.topic
            ));
        } else {
            c.sns
                .subscribe()
                .topic_arn(&topic_arn)
                .protocol("sqs")
                .endpoint(&arn)
                .return_subscription_arn(true)
                .send()
                .await
                .map_err(|e| {
                    sdk_err(
                        "sns",
                        &format!("Subscribe {sub} to {}", plan.fixed.notifications.topic),
                        e,
                    )
                })?;
            done.push(format!(
                "subscribed queue {sub} to topic {}",
                plan.fixed.notifications.topic
            ));
        }
    }
    Ok(done)
}

async fn stream(c: &Clients, plan: &Plan, done: &mut Vec<String>) -> anyhow::Result<()> {
    let name = &plan.fixed.stream.name;
    let summary = c
        .kinesis
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await;
    match summary {
        Ok(out) => {
            let s = out.stream_description_summary();
            let open = s.map(|s| s.open_shard_count()).unwrap_or(0);
            let mut line = format!("stream {name} exists ({open} open shards)");
            if open as u32 != plan.fixed.stream.shards {
                line.push_str(&format!(
                    "; pipeline.toml says {}: reshard with `aws kinesis update-shard-count` if you mean it (pipehost follows resharding)",
                    plan.fixed.stream.shards
                ));
            }
            done.push(line);
            return Ok(());
        }
        Err(e) if code_of(&e) == Some("ResourceNotFoundException") => {}
        Err(e) => {
            return Err(sdk_err("kinesis", &format!("DescribeStreamSummary {name}"), e).into());
        }
    }
    c.kinesis
        .create_stream()
        .stream_name(name)
        .shard_count(plan.fixed.stream.shards as i32)
        .send()
        .await
        .map_err(|e| sdk_err("kinesis", &format!("CreateStream {name}"), e))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = c
            .kinesis
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .map_err(|e| sdk_err("kinesis", &format!("DescribeStreamSummary {name}"), e))?
            .stream_description_summary()
            .map(|s| s.stream_status().clone());
        if status == Some(StreamStatus::Active) {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("stream {name} still not ACTIVE after 120 s ({status:?})");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    done.push(format!(
        "created stream {name} with {} shards",
        plan.fixed.stream.shards
    ));
    Ok(())
}

/// Creates a queue if missing and applies the pipeline's attributes.
async fn queue(
    c: &Clients,
    name: &str,
    plan: &Plan,
    redrive: Option<String>,
    done: &mut Vec<String>,
) -> anyhow::Result<String> {
    let mut attrs = vec![
        (
            QueueAttributeName::MaximumMessageSize,
            c.max_message_bytes.to_string(),
        ),
        (
            QueueAttributeName::MessageRetentionPeriod,
            (RETENTION_DAYS * 24 * 3600).to_string(),
        ),
    ];
    if name == plan.fixed.queue.name {
        attrs.push((
            QueueAttributeName::VisibilityTimeout,
            plan.fixed.queue.visibility_timeout.as_secs().to_string(),
        ));
    }
    if let Some(r) = redrive {
        attrs.push((QueueAttributeName::RedrivePolicy, r));
    }
    let existing = c.sqs.get_queue_url().queue_name(name).send().await;
    let url = match existing {
        Ok(out) => {
            let url = out.queue_url().unwrap_or_default().to_string();
            c.sqs
                .set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(attrs.into_iter().collect()))
                .send()
                .await
                .map_err(|e| sdk_err("sqs", &format!("SetQueueAttributes {name}"), e))?;
            done.push(format!("queue {name} exists (attributes applied)"));
            url
        }
        Err(e)
            if matches!(
                code_of(&e),
                Some("AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist")
            ) =>
        {
            let out = c
                .sqs
                .create_queue()
                .queue_name(name)
                .set_attributes(Some(attrs.into_iter().collect()))
                .send()
                .await
                .map_err(|e| sdk_err("sqs", &format!("CreateQueue {name}"), e))?;
            done.push(format!("created queue {name}"));
            out.queue_url().unwrap_or_default().to_string()
        }
        Err(e) => return Err(sdk_err("sqs", &format!("GetQueueUrl {name}"), e).into()),
    };
    Ok(url)
}

async fn queue_arn(c: &Clients, url: &str) -> anyhow::Result<String> {
    let out = c
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sdk_err("sqs", &format!("GetQueueAttributes {url}"), e))?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("queue {url} has no QueueArn"))
}

async fn subscribed(c: &Clients, topic_arn: &str, queue_arn: &str) -> anyhow::Result<bool> {
    let mut token: Option<String> = None;
    loop {
        let out = c
            .sns
            .list_subscriptions_by_topic()
            .topic_arn(topic_arn)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| sdk_err("sns", "ListSubscriptionsByTopic", e))?;
        if out
            .subscriptions()
            .iter()
            .any(|s| s.endpoint() == Some(queue_arn) && s.protocol() == Some("sqs"))
        {
            return Ok(true);
        }
        match out.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => return Ok(false),
        }
    }
}

async fn bucket(c: &Clients, aws: &AwsPlan, done: &mut Vec<String>) -> anyhow::Result<()> {
    let name = &c.bucket;
    match c.s3.head_bucket().bucket(name).send().await {
        Ok(_) => done.push(format!("bucket {name} exists")),
        Err(e)
            if e.as_service_error().is_some_and(|s| s.is_not_found())
                || code_of(&e) == Some("NotFound") =>
        {
            let mut req = c.s3.create_bucket().bucket(name);
            if c.region != "us-east-1" {
                req = req.create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(c.region.as_str()))
                        .build(),
                );
            }
            req.send()
                .await
                .map_err(|e| sdk_err("s3", &format!("CreateBucket {name}"), e))?;
            done.push(format!("created bucket {name} in {}", c.region));
        }
        Err(e) => return Err(sdk_err("s3", &format!("HeadBucket {name}"), e).into()),
    }
    let expire = |id: &str, prefix: String| -> anyhow::Result<LifecycleRule> {
        Ok(LifecycleRule::builder()
            .id(id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
            .expiration(LifecycleExpiration::builder().days(RETENTION_DAYS).build())
            .build()?)
    };
    let ours = vec![
        expire(
            "pipehost-payloads",
            format!("{}payloads/", aws.state_prefix),
        )?,
        expire(
            "pipehost-notified",
            format!("{}notified/", aws.state_prefix),
        )?,
    ];
    // The call replaces the whole configuration: keep the bucket's other rules.
    let mut rules: Vec<LifecycleRule> = match c
        .s3
        .get_bucket_lifecycle_configuration()
        .bucket(name)
        .send()
        .await
    {
        Ok(out) => out.rules().to_vec(),
        Err(e) if code_of(&e) == Some("NoSuchLifecycleConfiguration") => Vec::new(),
        Err(e) => {
            return Err(
                sdk_err("s3", &format!("GetBucketLifecycleConfiguration {name}"), e).into(),
            );
        }
    };
    rules.retain(|r| !ours.iter().any(|o| o.id() == r.id()));
    rules.extend(ours);
    c.s3.put_bucket_lifecycle_configuration()
        .bucket(name)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(rules))
                .build()?,
        )
        .send()
        .await
        .map_err(|e| sdk_err("s3", &format!("PutBucketLifecycleConfiguration {name}"), e))?;
    done.push(format!(
        "bucket {name}: {}payloads/ and {}notified/ expire after {RETENTION_DAYS} days",
        aws.state_prefix, aws.state_prefix
    ));
    Ok(())
}
