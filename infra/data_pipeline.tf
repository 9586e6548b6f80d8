# pipehost on AWS with Terraform: the same pipeline as data_pipeline.yml.
#
#   web server (ECS Fargate, behind an ALB) -> Kinesis stream -> bridge (ECS Fargate,
#   one task) -> SQS queue (+ DLQ) -> processing Lambda (`pipehost lambda`) -> S3 bucket
#   -> SNS topic -> example SQS subscriber (with a filter policy)
#
# Kept in step with the CloudFormation template by infra/tests/check_infra.py:
#   - resource names: the CloudFormation logical id in snake_case
#     (MainQueue <-> aws_sqs_queue.main_queue, ProcessorFunction <->
#     aws_lambda_function.processor_function);
#   - where the AWS provider splits one CloudFormation resource into several, the
#     extra resources carry the parent's name: Bucket <-> aws_s3_bucket.bucket plus
#     aws_s3_bucket_{server_side_encryption_configuration,public_access_block,
#     ownership_controls,versioning,lifecycle_configuration}.bucket; an IAM role's
#     inline Policies <-> aws_iam_role_policy.<role>. (The table is SPLIT_RESOURCES
#     in the checker.)
#   - variables: the parameters in snake_case, same defaults; outputs: the outputs in
#     snake_case;
#   - conditions: each CloudFormation condition is a local of the same name in
#     snake_case, and a resource with `Condition: X` has `count = local.x ? 1 : 0`.
#
# The header of data_pipeline.yml explains the bridge service versus an EventBridge
# Pipe, and why the bridge runs as its own single-task service. infra/README.md has
# the deployment steps.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.60"
    }
  }
}

provider "aws" {
  default_tags {
    tags = {
      "pipehost:pipeline" = var.pipeline_name
    }
  }
}

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

# ---------------------------------------------------------------- names (from pipeline.toml)

variable "pipeline_name" {
  description = "pipeline.name. Also prefixes the compute resources; load balancer names allow 32 characters, so at most 28 here."
  type        = string
  default     = "market-data"
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,26}[a-z0-9])?$", var.pipeline_name))
    error_message = "1-28 of a-z, 0-9 and '-', not starting or ending with '-'."
  }
}

variable "stream_name" {
  description = "Kinesis stream (stream.name, else pipeline.name)."
  type        = string
  default     = "market-data"
}

variable "queue_name" {
  description = "SQS queue of batches (queue.name, else <pipeline.name>-batches)."
  type        = string
  default     = "market-data-batches"
}

variable "dead_letter_queue_name" {
  description = "Dead-letter queue (queue.dead_letter, else <queue>-dlq)."
  type        = string
  default     = "market-data-batches-dlq"
}

variable "bucket_name" {
  description = "S3 bucket (store.bucket, else pipeline.name). Real S3 bucket names are global: pick one nobody has (e.g. market-data-<account id>) and set store.bucket to it."
  type        = string
  default     = "market-data"
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "Not a valid S3 bucket name."
  }
}

variable "topic_name" {
  description = "SNS topic, one notification per stored object (notifications.topic, else <pipeline.name>-objects)."
  type        = string
  default     = "market-data-objects"
}

variable "subscriber_queue_name" {
  description = "The example SQS queue subscribed to the topic (notifications.subscribers[0])."
  type        = string
  default     = "market-data-object-events"
}

# ---------------------------------------------------------------- stream

variable "stream_mode" {
  description = "PROVISIONED: shard_count shards, billed per shard-hour. ON_DEMAND: Kinesis scales itself, billed per GB plus a stream-hour fee."
  type        = string
  default     = "PROVISIONED"
  validation {
    condition     = contains(["PROVISIONED", "ON_DEMAND"], var.stream_mode)
    error_message = "PROVISIONED or ON_DEMAND."
  }
}

variable "shard_count" {
  description = "stream.shards. Used in PROVISIONED mode only."
  type        = number
  default     = 4
}

variable "stream_retention_hours" {
  type    = number
  default = 24
}

# ---------------------------------------------------------------- queue

variable "max_receives" {
  description = "queue.max_receives. Receives before a batch moves to the dead-letter queue."
  type        = number
  default     = 5
}

# ---------------------------------------------------------------- bucket

variable "bucket_versioning" {
  description = "Enabled or Suspended. pipehost overwrites an object when a batch is redelivered; versioning keeps the older copies until noncurrent_version_expiration_days."
  type        = string
  default     = "Enabled"
  validation {
    condition     = contains(["Enabled", "Suspended"], var.bucket_versioning)
    error_message = "Enabled or Suspended."
  }
}

variable "error_prefix" {
  description = "store.error_prefix, where rejected records are written."
  type        = string
  default     = "errors/"
}

variable "data_prefix" {
  description = "The constant start of store.key_template (up to its first placeholder): the only keys besides error_prefix the processor may write. Empty: anywhere in the bucket."
  type        = string
  default     = "dataset="
  validation {
    condition     = can(regex("^([^/{][^{]*)?$", var.data_prefix))
    error_message = "The literal start of a key template: no leading '/', no '{'."
  }
}

variable "error_expiration_days" {
  type    = number
  default = 30
}

variable "state_prefix" {
  description = "aws.state_prefix: where pipehost keeps its own state in the bucket (checkpoints/, sending/, producers/, payloads/, notified/)."
  type        = string
  default     = "_pipehost/"
}

variable "payload_expiration_days" {
  description = "Days before large-message payloads and notification markers (<state_prefix>payloads/ and notified/) expire; above the queues' 14-day retention."
  type        = number
  default     = 15
  validation {
    condition     = var.payload_expiration_days >= 15
    error_message = "At least 15 days, so a dead-lettered pointer message still finds its payload."
  }
}

variable "noncurrent_version_expiration_days" {
  type    = number
  default = 30
}

# ---------------------------------------------------------------- notifications

variable "subscriber_datasets" {
  description = "Example filter policy of the subscriber queue: the `dataset` message attribute values it receives."
  type        = list(string)
  default     = ["forex", "stock", "news"]
}

# ---------------------------------------------------------------- compute

variable "deploy_compute" {
  description = "false creates the data plane only (stream, queues, bucket, topic, subscription, policies)."
  type        = bool
  default     = true
}

variable "architecture" {
  description = "CPU of the Lambda function and the Fargate tasks; must match the binary and the image."
  type        = string
  default     = "x86_64"
  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "x86_64 or arm64."
  }
}

variable "log_retention_days" {
  type    = number
  default = 30
}

# ---------------------------------------------------------------- processing Lambda

variable "function_code_bucket" {
  description = "S3 bucket holding the deployment package (bootstrap + pipeline.toml + plugins/*.wasm). Required when deploy_compute is true."
  type        = string
  default     = ""
}

variable "function_code_key" {
  type    = string
  default = "pipehost/pipehost-lambda.zip"
}

variable "function_timeout" {
  description = "Seconds. The queue's visibility timeout is 6x this."
  type        = number
  default     = 60
  validation {
    condition     = contains([30, 60, 120, 180, 300, 600, 900], var.function_timeout)
    error_message = "One of 30, 60, 120, 180, 300, 600, 900 (as in the CloudFormation template)."
  }
}

variable "memory_size" {
  type    = number
  default = 1024
}

variable "batch_size" {
  description = "Messages (pipehost batches) per invocation; processor.receive_batch. Above 10 needs maximum_batching_window_in_seconds >= 1."
  type        = number
  default     = 10
}

variable "maximum_batching_window_in_seconds" {
  type    = number
  default = 0
}

variable "maximum_concurrency" {
  description = "Concurrent invocations the event source mapping may run; processor.workers (at least 2)."
  type        = number
  default     = 2
  validation {
    condition     = var.maximum_concurrency >= 2 && var.maximum_concurrency <= 1000
    error_message = "2 to 1000."
  }
}

# ---------------------------------------------------------------- web server and bridge on ECS Fargate

variable "container_image" {
  description = "pipehost image (binary, pipeline.toml and plugins). Required when deploy_compute is true."
  type        = string
  default     = ""
}

variable "container_repository_name" {
  description = "The ECR repository (this account and region) container_image is pulled from; the only one the tasks may pull."
  type        = string
  default     = "pipehost"
}

variable "container_port" {
  type    = number
  default = 8080
}

variable "web_command" {
  description = "Command of the web server container (after the image's entrypoint, `pipehost`)."
  type        = list(string)
  default     = ["serve", "/etc/pipehost/pipeline.toml"]
}

variable "bridge_command" {
  description = "Command of the bridge container. One bridge task only."
  type        = list(string)
  default     = ["run", "--stages", "bridge", "/etc/pipehost/pipeline.toml"]
}

variable "web_desired_count" {
  type    = number
  default = 2
}

variable "task_cpu" {
  type    = string
  default = "512"
}

variable "task_memory" {
  type    = string
  default = "1024"
}

variable "vpc_id" {
  description = "Required when deploy_compute is true."
  type        = string
  default     = ""
}

variable "load_balancer_subnet_ids" {
  description = "Subnets of the load balancer, in at least two availability zones."
  type        = list(string)
  default     = []
}

variable "service_subnet_ids" {
  description = "Subnets of the tasks. Private subnets need a NAT gateway or VPC endpoints (ECR, S3, Kinesis, SQS, CloudWatch Logs)."
  type        = list(string)
  default     = []
}

variable "assign_public_ip" {
  type    = string
  default = "DISABLED"
  validation {
    condition     = contains(["ENABLED", "DISABLED"], var.assign_public_ip)
    error_message = "ENABLED or DISABLED."
  }
}

variable "load_balancer_scheme" {
  type    = string
  default = "internet-facing"
  validation {
    condition     = contains(["internet-facing", "internal"], var.load_balancer_scheme)
    error_message = "internet-facing or internal."
  }
}

variable "load_balancer_ingress_cidr" {
  type    = string
  default = "0.0.0.0/0"
}

variable "certificate_arn" {
  description = "ACM certificate for HTTPS on 443 (port 80 then redirects to it). Empty: plain HTTP on port 80."
  type        = string
  default     = ""
}

# ---------------------------------------------------------------- alarms

variable "alarm_email" {
  description = "Optional. Creates an alarm topic with this e-mail subscribed; the alarms notify it."
  type        = string
  default     = ""
}

variable "iterator_age_alarm_milliseconds" {
  type    = number
  default = 60000
}

variable "web_server_errors_alarm_threshold" {
  type    = number
  default = 10
}

# ---------------------------------------------------------------- conditions (CloudFormation Conditions)

locals {
  deploy_compute              = var.deploy_compute
  is_provisioned              = var.stream_mode == "PROVISIONED"
  is_arm64                    = var.architecture == "arm64"
  has_certificate             = var.certificate_arn != ""
  has_certificate_and_compute = local.has_certificate && local.deploy_compute
  has_alarm_email             = var.alarm_email != ""

  alarm_actions = local.has_alarm_email ? [aws_sns_topic.alarm_topic[0].arn] : []
  partition     = data.aws_partition.current.partition
  region        = data.aws_region.current.name
  account_id    = data.aws_caller_identity.current.account_id
}

# ---------------------------------------------------------------- stream

resource "aws_kinesis_stream" "stream" {
  name             = var.stream_name
  shard_count      = local.is_provisioned ? var.shard_count : null
  retention_period = var.stream_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = "alias/aws/kinesis"

  stream_mode_details {
    stream_mode = var.stream_mode
  }
}

# ---------------------------------------------------------------- queues

resource "aws_sqs_queue" "dead_letter_queue" {
  name                      = var.dead_letter_queue_name
  message_retention_seconds = 1209600 # 14 days, the maximum
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "main_queue" {
  name = var.queue_name
  # >= 6x the function timeout, so a batch is not redelivered while an invocation still holds it.
  visibility_timeout_seconds = 6 * var.function_timeout
  message_retention_seconds  = 1209600 # 14 days, as `pipehost setup` makes it
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter_queue.arn
    maxReceiveCount     = var.max_receives
  })
}

# ---------------------------------------------------------------- bucket

resource "aws_s3_bucket" "bucket" {
  #checkov:skip=CKV_AWS_18:Server access logging needs a second bucket (with its own logging question); enable it, or CloudTrail data events, where required.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice with a second bucket and region; the pipeline can replay from the stream within its retention.
  #checkov:skip=CKV2_AWS_62:Object notifications are published by pipehost itself (one SNS message per stored object, with message attributes), not by S3 event notifications.
  bucket = var.bucket_name
}

resource "aws_s3_bucket_server_side_encryption_configuration" "bucket" {
  bucket = aws_s3_bucket.bucket.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms" # the AWS-managed key aws/s3
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "bucket" {
  bucket                  = aws_s3_bucket.bucket.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "bucket" {
  bucket = aws_s3_bucket.bucket.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "bucket" {
  bucket = aws_s3_bucket.bucket.id
  versioning_configuration {
    status = var.bucket_versioning
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "bucket" {
  bucket     = aws_s3_bucket.bucket.id
  depends_on = [aws_s3_bucket_versioning.bucket]

  rule {
    id     = "expire-errors"
    status = "Enabled"
    filter {
      prefix = var.error_prefix
    }
    expiration {
      days = var.error_expiration_days
    }
  }

  rule {
    id     = "expire-large-message-payloads"
    status = "Enabled"
    filter {
      prefix = "${var.state_prefix}payloads/"
    }
    expiration {
      days = var.payload_expiration_days
    }
  }

  rule {
    id     = "expire-notification-markers"
    status = "Enabled"
    filter {
      prefix = "${var.state_prefix}notified/"
    }
    expiration {
      days = var.payload_expiration_days
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_policy" "bucket_policy" {
  bucket     = aws_s3_bucket.bucket.id
  depends_on = [aws_s3_bucket_public_access_block.bucket]
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.bucket.arn, "${aws_s3_bucket.bucket.arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
}

# ---------------------------------------------------------------- notifications

resource "aws_sns_topic" "topic" {
  name              = var.topic_name
  kms_master_key_id = "alias/aws/sns"
}

resource "aws_sqs_queue" "subscriber_queue" {
  name                      = var.subscriber_queue_name
  message_retention_seconds = 1209600
  # SSE-SQS, not aws/sqs: SNS cannot deliver into a queue encrypted with the AWS-managed SQS KMS key.
  sqs_managed_sse_enabled = true
}

resource "aws_sqs_queue_policy" "subscriber_queue_policy" {
  queue_url = aws_sqs_queue.subscriber_queue.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AllowTopic"
      Effect    = "Allow"
      Principal = { Service = "sns.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.subscriber_queue.arn
      Condition = { ArnEquals = { "aws:SourceArn" = aws_sns_topic.topic.arn } }
    }]
  })
}

# Every notification carries the message attributes `dataset` (String),
# `record_count` (Number), `plugin_versions` (String) and `kind` (String).
# This example receives the chosen datasets only; a numeric rule would read
# e.g. record_count = [{ numeric = [">=", 1000] }].
resource "aws_sns_topic_subscription" "subscriber_subscription" {
  topic_arn           = aws_sns_topic.topic.arn
  protocol            = "sqs"
  endpoint            = aws_sqs_queue.subscriber_queue.arn
  filter_policy_scope = "MessageAttributes"
  filter_policy = jsonencode({
    dataset = var.subscriber_datasets
  })
  depends_on = [aws_sqs_queue_policy.subscriber_queue_policy]
}

# ---------------------------------------------------------------- processing Lambda

resource "aws_cloudwatch_log_group" "processor_log_group" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts at rest with a service key; a customer-managed key is optional.
  #checkov:skip=CKV_AWS_338:A month of logs (log_retention_days) is enough for operations; raise it where a policy requires a year.
  count             = local.deploy_compute ? 1 : 0
  name              = "/aws/lambda/${var.pipeline_name}-processor"
  retention_in_days = var.log_retention_days
}

resource "aws_iam_role" "processor_function_role" {
  count = local.deploy_compute ? 1 : 0
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "processor_function_role" {
  count = local.deploy_compute ? 1 : 0
  name  = "processor"
  role  = aws_iam_role.processor_function_role[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # The event source mapping polls and deletes with the function's role.
        Sid      = "ConsumeQueue"
        Effect   = "Allow"
        Action   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
        Resource = aws_sqs_queue.main_queue.arn
      },
      {
        # Objects and error records only: pipehost's other state (checkpoints,
        # feed positions, payloads) is not the processor's to write.
        Sid    = "StoreObjects"
        Effect = "Allow"
        Action = "s3:PutObject"
        Resource = [
          "${aws_s3_bucket.bucket.arn}/${var.data_prefix}*",
          "${aws_s3_bucket.bucket.arn}/${var.error_prefix}*",
        ]
      },
      {
        # Notification markers: created (If-None-Match), read, marked published.
        Sid      = "NotificationMarkers"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject"]
        Resource = "${aws_s3_bucket.bucket.arn}/${var.state_prefix}notified/*"
      },
      {
        # Large-message payloads.
        Sid      = "ReadState"
        Effect   = "Allow"
        Action   = "s3:GetObject"
        Resource = "${aws_s3_bucket.bucket.arn}/${var.state_prefix}payloads/*"
      },
      {
        # Without ListBucket, S3 answers 403 instead of 404 for an object that does not
        # exist, and pipehost cannot tell "no marker yet" from a failure.
        Sid      = "TellMissingObjects"
        Effect   = "Allow"
        Action   = "s3:ListBucket"
        Resource = aws_s3_bucket.bucket.arn
      },
      {
        Sid      = "Notify"
        Effect   = "Allow"
        Action   = "sns:Publish"
        Resource = aws_sns_topic.topic.arn
      },
      {
        # pipehost finds the topic's ARN by name; ListTopics cannot be scoped.
        Sid      = "FindTopic"
        Effect   = "Allow"
        Action   = "sns:ListTopics"
        Resource = "*"
      },
      {
        # AWSLambdaBasicExecutionRole, narrowed to the function's own log group.
        Sid      = "Logs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = "${aws_cloudwatch_log_group.processor_log_group[0].arn}:*"
      },
    ]
  })
}

resource "aws_lambda_function" "processor_function" {
  #checkov:skip=CKV_AWS_117:Not in a VPC by design: the function reaches only SQS, S3 and SNS public endpoints, and a VPC would need a NAT gateway or three VPC endpoints.
  #checkov:skip=CKV_AWS_116:A function DLQ applies to asynchronous invocations only; the SQS event source mapping invokes synchronously and failed messages go to the queue's redrive DLQ.
  #checkov:skip=CKV_AWS_115:Concurrency is capped by the event source mapping (maximum_concurrency); reserving concurrency fails on accounts with the default quota of 10.
  #checkov:skip=CKV_AWS_173:The environment holds resource names and a file path, no secrets; Lambda encrypts it at rest with its service key.
  #checkov:skip=CKV_AWS_272:Code signing (an AWS Signer profile) is optional; the package comes from a private bucket.
  #checkov:skip=CKV_AWS_50:X-Ray tracing is optional; pipehost reports its own metrics and logs.
  count         = local.deploy_compute ? 1 : 0
  function_name = "${var.pipeline_name}-processor"
  description   = "pipehost lambda - parse, transform, store and notify batches from the queue"
  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = [var.architecture]
  s3_bucket     = var.function_code_bucket
  s3_key        = var.function_code_key
  memory_size   = var.memory_size
  timeout       = var.function_timeout
  role          = aws_iam_role.processor_function_role[0].arn

  environment {
    variables = {
      PIPEHOST_PIPELINE               = "/var/task/pipeline.toml"
      PIPEHOST_STREAM_NAME            = var.stream_name
      PIPEHOST_QUEUE_NAME             = var.queue_name
      PIPEHOST_DEAD_LETTER_QUEUE_NAME = var.dead_letter_queue_name
      PIPEHOST_BUCKET                 = var.bucket_name
      PIPEHOST_TOPIC_ARN              = aws_sns_topic.topic.arn
      RUST_LOG                        = "info"
    }
  }

  depends_on = [aws_cloudwatch_log_group.processor_log_group, aws_iam_role_policy.processor_function_role]

  lifecycle {
    precondition {
      condition     = var.function_code_bucket != ""
      error_message = "function_code_bucket is required when deploy_compute is true."
    }
  }
}

resource "aws_lambda_event_source_mapping" "processor_event_source_mapping" {
  count                              = local.deploy_compute ? 1 : 0
  event_source_arn                   = aws_sqs_queue.main_queue.arn
  function_name                      = aws_lambda_function.processor_function[0].arn
  enabled                            = true
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.maximum_batching_window_in_seconds
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.maximum_concurrency
  }

  depends_on = [aws_iam_role_policy.processor_function_role]
}

# ---------------------------------------------------------------- ECS: web server and bridge

resource "aws_ecs_cluster" "cluster" {
  count = local.deploy_compute ? 1 : 0
  name  = var.pipeline_name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "web_log_group" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts at rest with a service key; a customer-managed key is optional.
  #checkov:skip=CKV_AWS_338:A month of logs (log_retention_days) is enough for operations; raise it where a policy requires a year.
  count             = local.deploy_compute ? 1 : 0
  name              = "/ecs/${var.pipeline_name}/web"
  retention_in_days = var.log_retention_days
}

resource "aws_cloudwatch_log_group" "bridge_log_group" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts at rest with a service key; a customer-managed key is optional.
  #checkov:skip=CKV_AWS_338:A month of logs (log_retention_days) is enough for operations; raise it where a policy requires a year.
  count             = local.deploy_compute ? 1 : 0
  name              = "/ecs/${var.pipeline_name}/bridge"
  retention_in_days = var.log_retention_days
}

# Used by ECS itself to pull the image and write the container logs.
resource "aws_iam_role" "task_execution_role" {
  count = local.deploy_compute ? 1 : 0
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "task_execution_role" {
  count = local.deploy_compute ? 1 : 0
  name  = "task-execution"
  role  = aws_iam_role.task_execution_role[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "EcrToken" # not scoped to a resource by ECR
        Effect   = "Allow"
        Action   = "ecr:GetAuthorizationToken"
        Resource = "*"
      },
      {
        Sid      = "PullImage"
        Effect   = "Allow"
        Action   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
        Resource = "arn:${local.partition}:ecr:${local.region}:${local.account_id}:repository/${var.container_repository_name}"
      },
      {
        Sid    = "Logs"
        Effect = "Allow"
        Action = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = [
          "${aws_cloudwatch_log_group.web_log_group[0].arn}:*",
          "${aws_cloudwatch_log_group.bridge_log_group[0].arn}:*",
        ]
      },
    ]
  })
}

# The web server produces to the stream and keeps its feeds' positions.
resource "aws_iam_role" "web_task_role" {
  count = local.deploy_compute ? 1 : 0
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "web_task_role" {
  count = local.deploy_compute ? 1 : 0
  name  = "web"
  role  = aws_iam_role.web_task_role[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "Produce"
        Effect   = "Allow"
        Action   = ["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:DescribeStreamSummary", "kinesis:ListShards"]
        Resource = aws_kinesis_stream.stream.arn
      },
      {
        # Each feed's position (next tick, records), kept with its records.
        Sid      = "ProducerPositions"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject"]
        Resource = "${aws_s3_bucket.bucket.arn}/${var.state_prefix}producers/*"
      },
      {
        # Records Kinesis can never take (over 1 MiB), kept with the reason.
        Sid      = "StreamErrors"
        Effect   = "Allow"
        Action   = "s3:PutObject"
        Resource = "${aws_s3_bucket.bucket.arn}/${var.error_prefix}stream/*"
      },
      {
        # 404 rather than 403 for a position not written yet.
        Sid      = "TellMissingObjects"
        Effect   = "Allow"
        Action   = "s3:ListBucket"
        Resource = aws_s3_bucket.bucket.arn
      },
    ]
  })
}

# The bridge reads the stream, sends batches to the queue, and keeps its
# checkpoints and large-message payloads under state_prefix in the bucket.
resource "aws_iam_role" "bridge_task_role" {
  count = local.deploy_compute ? 1 : 0
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "bridge_task_role" {
  count = local.deploy_compute ? 1 : 0
  name  = "bridge"
  role  = aws_iam_role.bridge_task_role[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadStream"
        Effect   = "Allow"
        Action   = ["kinesis:DescribeStreamSummary", "kinesis:ListShards", "kinesis:GetShardIterator", "kinesis:GetRecords"]
        Resource = aws_kinesis_stream.stream.arn
      },
      {
        Sid      = "SendBatches"
        Effect   = "Allow"
        Action   = ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
        Resource = aws_sqs_queue.main_queue.arn
      },
      {
        Sid    = "CheckpointsAndPayloads"
        Effect = "Allow"
        Action = ["s3:GetObject", "s3:PutObject"]
        Resource = [
          "${aws_s3_bucket.bucket.arn}/${var.state_prefix}checkpoints/*",
          "${aws_s3_bucket.bucket.arn}/${var.state_prefix}sending/*",
          "${aws_s3_bucket.bucket.arn}/${var.state_prefix}payloads/*",
        ]
      },
      {
        # Without ListBucket, reading a checkpoint that does not exist yet answers 403 instead of 404.
        Sid      = "TellMissingObjects"
        Effect   = "Allow"
        Action   = "s3:ListBucket"
        Resource = aws_s3_bucket.bucket.arn
      },
    ]
  })
}

resource "aws_ecs_task_definition" "web_task_definition" {
  count                    = local.deploy_compute ? 1 : 0
  family                   = "${var.pipeline_name}-web"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.task_execution_role[0].arn
  task_role_arn            = aws_iam_role.web_task_role[0].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = local.is_arm64 ? "ARM64" : "X86_64" # ECS spells them differently from Lambda
  }

  volume {
    name = "tmp" # the root filesystem is read-only; scratch space (plugin compile cache) here
  }

  container_definitions = jsonencode([{
    name                   = "web"
    image                  = var.container_image
    essential              = true
    command                = var.web_command
    readonlyRootFilesystem = true
    privileged             = false
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp" }]
    portMappings           = [{ containerPort = var.container_port, protocol = "tcp" }]
    environment = [
      { name = "PIPEHOST_PIPELINE", value = "/etc/pipehost/pipeline.toml" },
      { name = "PIPEHOST_STREAM_NAME", value = var.stream_name },
      { name = "RUST_LOG", value = "info" },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.web_log_group[0].name
        awslogs-region        = local.region
        awslogs-stream-prefix = "web"
      }
    }
  }])

  lifecycle {
    precondition {
      condition     = var.container_image != ""
      error_message = "container_image is required when deploy_compute is true."
    }
  }
}

resource "aws_ecs_task_definition" "bridge_task_definition" {
  count                    = local.deploy_compute ? 1 : 0
  family                   = "${var.pipeline_name}-bridge"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.task_execution_role[0].arn
  task_role_arn            = aws_iam_role.bridge_task_role[0].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = local.is_arm64 ? "ARM64" : "X86_64"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([{
    name                   = "bridge"
    image                  = var.container_image
    essential              = true
    command                = var.bridge_command
    readonlyRootFilesystem = true
    privileged             = false
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp" }]
    environment = [
      { name = "PIPEHOST_PIPELINE", value = "/etc/pipehost/pipeline.toml" },
      { name = "PIPEHOST_STREAM_NAME", value = var.stream_name },
      { name = "PIPEHOST_QUEUE_NAME", value = var.queue_name },
      { name = "PIPEHOST_BUCKET", value = var.bucket_name },
      { name = "RUST_LOG", value = "info" },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.bridge_log_group[0].name
        awslogs-region        = local.region
        awslogs-stream-prefix = "bridge"
      }
    }
  }])
}

resource "aws_security_group" "load_balancer_security_group" {
  count       = local.deploy_compute ? 1 : 0
  description = "pipehost web load balancer"
  vpc_id      = var.vpc_id

  egress {
    description     = "to the web tasks"
    protocol        = "tcp"
    from_port       = var.container_port
    to_port         = var.container_port
    security_groups = [aws_security_group.web_service_security_group[0].id]
  }

  lifecycle {
    precondition {
      condition     = var.vpc_id != "" && length(var.load_balancer_subnet_ids) > 0 && length(var.service_subnet_ids) > 0
      error_message = "vpc_id, load_balancer_subnet_ids and service_subnet_ids are required when deploy_compute is true."
    }
  }
}

resource "aws_vpc_security_group_ingress_rule" "load_balancer_ingress" {
  count             = local.deploy_compute ? 1 : 0
  description       = "clients (HTTPS when a certificate is given, else HTTP)"
  security_group_id = aws_security_group.load_balancer_security_group[0].id
  ip_protocol       = "tcp"
  from_port         = local.has_certificate ? 443 : 80
  to_port           = local.has_certificate ? 443 : 80
  cidr_ipv4         = var.load_balancer_ingress_cidr
}

resource "aws_vpc_security_group_ingress_rule" "load_balancer_redirect_ingress" {
  #checkov:skip=CKV_AWS_260:Port 80 of a public web endpoint, open only to redirect to HTTPS (http_redirect_listener); narrow load_balancer_ingress_cidr to restrict clients.
  count             = local.has_certificate_and_compute ? 1 : 0
  description       = "clients on HTTP, redirected to HTTPS"
  security_group_id = aws_security_group.load_balancer_security_group[0].id
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = var.load_balancer_ingress_cidr
}

resource "aws_security_group" "web_service_security_group" {
  count       = local.deploy_compute ? 1 : 0
  description = "pipehost web tasks"
  vpc_id      = var.vpc_id

  egress {
    description = "HTTPS to AWS APIs and ECR"
    protocol    = "tcp"
    from_port   = 443
    to_port     = 443
    cidr_blocks = ["0.0.0.0/0"]
  }
}

# A rule of its own: inline, the two groups would refer to each other (a cycle).
resource "aws_vpc_security_group_ingress_rule" "web_service_ingress_from_load_balancer" {
  count                        = local.deploy_compute ? 1 : 0
  description                  = "from the load balancer"
  security_group_id            = aws_security_group.web_service_security_group[0].id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
  referenced_security_group_id = aws_security_group.load_balancer_security_group[0].id
}

resource "aws_security_group" "bridge_security_group" {
  count       = local.deploy_compute ? 1 : 0
  description = "pipehost bridge task (no ingress)"
  vpc_id      = var.vpc_id

  egress {
    description = "HTTPS to AWS APIs and ECR"
    protocol    = "tcp"
    from_port   = 443
    to_port     = 443
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_lb" "load_balancer" {
  #checkov:skip=CKV_AWS_150:Deletion protection would make `terraform destroy` fail; the load balancer holds no data and is recreated in minutes. Set enable_deletion_protection in production.
  #checkov:skip=CKV2_AWS_28:WAF is a separate paid service whose rules depend on the deployment; the web server authenticates writes itself (API keys). Attach a web ACL where required.
  #checkov:skip=CKV_AWS_91:Access logs need a log bucket with an ELB-account bucket policy; the target 5xx alarm and the tasks' logs cover operations. Enable where required.
  count                      = local.deploy_compute ? 1 : 0
  name                       = "${var.pipeline_name}-web"
  load_balancer_type         = "application"
  internal                   = var.load_balancer_scheme == "internal"
  subnets                    = var.load_balancer_subnet_ids
  security_groups            = [aws_security_group.load_balancer_security_group[0].id]
  drop_invalid_header_fields = true
  enable_deletion_protection = false
}

resource "aws_lb_target_group" "target_group" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer (HTTPS with certificate_arn); the hop to the tasks stays inside the VPC, open only to the load balancer's security group.
  count       = local.deploy_compute ? 1 : 0
  name        = "${var.pipeline_name}-web"
  vpc_id      = var.vpc_id
  target_type = "ip"
  protocol    = "HTTP"
  port        = var.container_port

  deregistration_delay = 30

  health_check {
    protocol            = "HTTP"
    path                = "/healthz"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
    matcher             = "200"
  }
}

# HTTPS on 443 with a certificate, else HTTP on 80.
resource "aws_lb_listener" "listener" {
  count             = local.deploy_compute ? 1 : 0
  load_balancer_arn = aws_lb.load_balancer[0].arn
  port              = local.has_certificate ? 443 : 80
  protocol          = local.has_certificate ? "HTTPS" : "HTTP"
  ssl_policy        = local.has_certificate ? "ELBSecurityPolicy-TLS13-1-2-2021-06" : null
  certificate_arn   = local.has_certificate ? var.certificate_arn : null

  # Only the API routes are public (api_listener_rule): /metrics, /readyz and
  # /healthz stay inside; the target group checks /healthz on the task itself.
  default_action {
    type = "fixed-response"
    fixed_response {
      status_code  = "404"
      content_type = "text/plain"
      message_body = "not found"
    }
  }
}

resource "aws_lb_listener_rule" "api_listener_rule" {
  count        = local.deploy_compute ? 1 : 0
  listener_arn = aws_lb_listener.listener[0].arn
  priority     = 10

  condition {
    path_pattern {
      values = ["/v1/feeds/*", "/logs"]
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.target_group[0].arn
  }
}

resource "aws_lb_listener" "http_redirect_listener" {
  count             = local.has_certificate_and_compute ? 1 : 0
  load_balancer_arn = aws_lb.load_balancer[0].arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"
    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }
}

resource "aws_ecs_service" "web_service" {
  count                              = local.deploy_compute ? 1 : 0
  name                               = "${var.pipeline_name}-web"
  cluster                            = aws_ecs_cluster.cluster[0].id
  task_definition                    = aws_ecs_task_definition.web_task_definition[0].arn
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  desired_count                      = var.web_desired_count
  health_check_grace_period_seconds  = 60
  deployment_maximum_percent         = 200
  deployment_minimum_healthy_percent = 100
  propagate_tags                     = "SERVICE"

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    assign_public_ip = var.assign_public_ip == "ENABLED"
    subnets          = var.service_subnet_ids
    security_groups  = [aws_security_group.web_service_security_group[0].id]
  }

  load_balancer {
    container_name   = "web"
    container_port   = var.container_port
    target_group_arn = aws_lb_target_group.target_group[0].arn
  }

  depends_on = [aws_lb_listener.listener]
}

# One bridge, always: stop the old task before starting the new one.
resource "aws_ecs_service" "bridge_service" {
  count                              = local.deploy_compute ? 1 : 0
  name                               = "${var.pipeline_name}-bridge"
  cluster                            = aws_ecs_cluster.cluster[0].id
  task_definition                    = aws_ecs_task_definition.bridge_task_definition[0].arn
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  desired_count                      = 1
  deployment_maximum_percent         = 100
  deployment_minimum_healthy_percent = 0
  propagate_tags                     = "SERVICE"

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    assign_public_ip = var.assign_public_ip == "ENABLED"
    subnets          = var.service_subnet_ids
    security_groups  = [aws_security_group.bridge_security_group[0].id]
  }
}

# ---------------------------------------------------------------- alarms

resource "aws_sns_topic" "alarm_topic" {
  #checkov:skip=CKV_AWS_26:CloudWatch cannot publish to a topic encrypted with the AWS-managed aws/sns key; alarm messages carry no pipeline data.
  count = local.has_alarm_email ? 1 : 0
  name  = "${var.pipeline_name}-alarms"
}

resource "aws_sns_topic_subscription" "alarm_email_subscription" {
  count     = local.has_alarm_email ? 1 : 0
  topic_arn = aws_sns_topic.alarm_topic[0].arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# The bridge is falling behind the stream (or stopped).
resource "aws_cloudwatch_metric_alarm" "stream_iterator_age_alarm" {
  alarm_name          = "${var.pipeline_name}-stream-iterator-age"
  alarm_description   = "The oldest record read from the stream is older than the threshold."
  namespace           = "AWS/Kinesis"
  metric_name         = "GetRecords.IteratorAgeMilliseconds"
  dimensions          = { StreamName = aws_kinesis_stream.stream.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = var.iterator_age_alarm_milliseconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Any batch in the DLQ: failed max_receives times (pipehost dlq list / redrive).
resource "aws_cloudwatch_metric_alarm" "dead_letter_queue_alarm" {
  alarm_name          = "${var.pipeline_name}-dead-letter-queue"
  alarm_description   = "Batches are waiting in the dead-letter queue."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dead_letter_queue.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Whole-invocation failures (a crash, a timeout). Failed records of a batch are
# reported through batchItemFailures and show up as DLQ depth instead.
resource "aws_cloudwatch_metric_alarm" "processor_errors_alarm" {
  count               = local.deploy_compute ? 1 : 0
  alarm_name          = "${var.pipeline_name}-processor-errors"
  alarm_description   = "The processing function failed invocations."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.processor_function[0].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "web_server_errors_alarm" {
  count               = local.deploy_compute ? 1 : 0
  alarm_name          = "${var.pipeline_name}-web-5xx"
  alarm_description   = "The web tasks answered too many 5xx responses."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_Target_5XX_Count"
  dimensions          = { LoadBalancer = aws_lb.load_balancer[0].arn_suffix }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.web_server_errors_alarm_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# ---------------------------------------------------------------- outputs

output "stream_name" {
  value = aws_kinesis_stream.stream.name
}

output "stream_arn" {
  value = aws_kinesis_stream.stream.arn
}

output "queue_url" {
  value = aws_sqs_queue.main_queue.id
}

output "queue_arn" {
  value = aws_sqs_queue.main_queue.arn
}

output "dead_letter_queue_url" {
  value = aws_sqs_queue.dead_letter_queue.id
}

output "dead_letter_queue_arn" {
  value = aws_sqs_queue.dead_letter_queue.arn
}

output "bucket_name" {
  value = aws_s3_bucket.bucket.id
}

output "topic_arn" {
  value = aws_sns_topic.topic.arn
}

output "subscriber_queue_url" {
  value = aws_sqs_queue.subscriber_queue.id
}

output "subscriber_queue_arn" {
  value = aws_sqs_queue.subscriber_queue.arn
}

output "function_name" {
  value = one(aws_lambda_function.processor_function[*].function_name)
}

output "load_balancer_dns_name" {
  value = one(aws_lb.load_balancer[*].dns_name)
}
