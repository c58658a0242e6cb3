// An Offload wire publisher in Go (amqp091-go), written from docs/wire-format.md alone.
//
//	publish <amqp-url> <jobs.json>
//
// jobs.json is a list of {type, queue, payload, tenant?, options?, priority?, job_id?, user_id?}:
// `options` are the HTTP API's job options (delay, max_retries, callback_url, then, tags, metadata,
// idempotency_key...), sent in the message's options.offload block; `priority` is "low", "normal"
// or "high"; `user_id: false` leaves the AMQP user_id property out (the tests' unauthenticated case).
// Each job is published persistent, on the default exchange with the queue as routing key, with
// publisher confirms and mandatory routing. Prints the job ids, in order, as one JSON list.
package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

type job struct {
	Type     string                 `json:"type"`
	Queue    string                 `json:"queue"`
	Payload  map[string]interface{} `json:"payload"`
	Tenant   *string                `json:"tenant"`
	Options  map[string]interface{} `json:"options"`
	Priority *string                `json:"priority"`
	JobID    *string                `json:"job_id"`
	UserID   *bool                  `json:"user_id"`
}

var amqpPriority = map[string]uint8{"low": 1, "normal": 2, "high": 3}

func uuid4() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = (b[6] & 0x0f) | 0x40 // version 4
	b[8] = (b[8] & 0x3f) | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func build(j job) (string, []byte, uint8) {
	id := uuid4()
	if j.JobID != nil {
		id = *j.JobID
	}
	offload := map[string]interface{}{"v": 1}
	for k, v := range j.Options {
		offload[k] = v
	}
	if j.Tenant != nil {
		offload["tenant"] = *j.Tenant
	}
	options := map[string]interface{}{"offload": offload}
	var priority uint8
	if j.Priority != nil {
		offload["priority"] = *j.Priority
		priority = amqpPriority[*j.Priority]
		options["broker_priority"] = priority
	}
	payload := j.Payload
	if payload == nil {
		payload = map[string]interface{}{}
	}
	body, err := json.Marshal(map[string]interface{}{
		"queue_name":        j.Queue,
		"actor_name":        j.Type,
		"args":              []interface{}{},
		"kwargs":            map[string]interface{}{"job_id": id, "payload": payload},
		"options":           options,
		"message_id":        id,
		"message_timestamp": time.Now().UnixMilli(),
	})
	if err != nil {
		panic(err)
	}
	return id, body, priority
}

func run(address, jobsFile string) error {
	parsed, err := url.Parse(address)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(jobsFile)
	if err != nil {
		return err
	}
	var jobs []job
	if err := json.Unmarshal(raw, &jobs); err != nil {
		return err
	}
	connection, err := amqp.Dial(address)
	if err != nil {
		return err
	}
	defer connection.Close()
	channel, err := connection.Channel()
	if err != nil {
		return err
	}
	if err := channel.Confirm(false); err != nil {
		return err
	}
	confirms := channel.NotifyPublish(make(chan amqp.Confirmation, len(jobs)))
	returns := channel.NotifyReturn(make(chan amqp.Return, len(jobs)))
	ids := []string{}
	for _, j := range jobs {
		id, body, priority := build(j)
		publishing := amqp.Publishing{
			DeliveryMode: amqp.Persistent,
			ContentType:  "application/json",
			MessageId:    id,
			Priority:     priority,
			Body:         body,
		}
		if j.UserID == nil || *j.UserID {
			publishing.UserId = parsed.User.Username() // RabbitMQ checks it is our login
		}
		if err := channel.Publish("", j.Queue, true, false, publishing); err != nil {
			return err
		}
		ids = append(ids, id)
	}
	for range jobs {
		confirmed, open := <-confirms
		if !open || !confirmed.Ack {
			return fmt.Errorf("the broker did not confirm a message")
		}
	}
	select {
	case returned := <-returns:
		return fmt.Errorf("unroutable (no such queue): %s", returned.MessageId)
	default:
	}
	out, _ := json.Marshal(ids)
	fmt.Println(string(out))
	return nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: publish <amqp-url> <jobs.json>")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintf(os.Stderr, "publish failed: %v\n", err)
		os.Exit(1)
	}
}
