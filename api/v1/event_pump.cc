#include "api/v1/event_pump.h"

#include <condition_variable>
#include <deque>
#include <thread>
#include <vector>

#include "api/http/buffer_pool.h"
#include "api/http/http.h"
#include "supervisor/workspace/run_logs.h"
#include "supervisor/workspace/text.h"

namespace sbx::api {

// Two threads shared by every pump: a wake-up queues the pump (once), a thread runs its Pump().
// The queue holds at most one entry per live pump.
class DeliveryThreads {
 public:
  // Never destroyed: at process exit the threads are not waited for. One may still be inside a
  // pump whose store its owner has already torn down (a test fixture, say), and joining it once
  // hung a finished test binary's exit for good.
  static DeliveryThreads& Get() {
    static DeliveryThreads* instance = new DeliveryThreads;
    return *instance;
  }
  void Post(std::weak_ptr<EventPump> pump) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      queue_.push_back(std::move(pump));
    }
    cv_.notify_one();
  }

 private:
  DeliveryThreads() {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { Loop(); });
  }
  void Loop() {
    for (;;) {
      std::weak_ptr<EventPump> next;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return !queue_.empty(); });
        next = std::move(queue_.front());
        queue_.pop_front();
      }
      if (auto pump = next.lock()) pump->Pump();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::weak_ptr<EventPump>> queue_;
  std::vector<std::thread> threads_;
};

std::shared_ptr<EventPump> EventPump::Start(supervisor::RunManager& runs, store::Store& store,
                                            std::string run_id, int64_t after,
                                            Consumer consumer) {
  auto pump = std::shared_ptr<EventPump>(
      new EventPump(runs, store, std::move(run_id), after, std::move(consumer)));
  std::weak_ptr<EventPump> weak = pump;
  // Woken by this node's commits and, through the store's watch, by other nodes'.
  uint64_t token = runs.SubscribeWake(pump->run_id_, [weak] {
    if (auto p = weak.lock()) p->Wake();
  });
  {
    std::lock_guard<std::mutex> lk(pump->mu_);
    pump->token_ = token;
  }
  pump->Wake();
  return pump;
}

EventPump::EventPump(supervisor::RunManager& runs, store::Store& store, std::string run_id,
                     int64_t after, Consumer consumer)
    : runs_(runs),
      store_(store),
      run_id_(std::move(run_id)),
      next_(after),
      consumer_(std::move(consumer)) {}

EventPump::~EventPump() { Stop(); }

void EventPump::Stop() {
  uint64_t token = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    done_ = true;
    token = std::exchange(token_, 0);
  }
  if (token != 0) runs_.Unsubscribe(token);
}

void EventPump::Wake() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (done_) return;
    if (running_) {
      again_ = true;
      return;
    }
    running_ = true;
  }
  DeliveryThreads::Get().Post(weak_from_this());
}

void EventPump::Pump() {
  for (;;) {
    Drain();
    std::lock_guard<std::mutex> lk(mu_);
    if (!again_ || done_) {
      running_ = false;
      return;
    }
    again_ = false;
  }
}

void EventPump::Drain() {
  for (;;) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (done_) return;
    }
    auto page = run_id_.empty() ? store_.ListAllEvents(next_, 200)
                                : store_.ListEvents(run_id_, next_, 200);
    if (!page.ok()) return;
    if (page->empty()) {
      if (consumer_.caught_up && consumer_.caught_up()) {
        std::lock_guard<std::mutex> lk(mu_);
        done_ = true;
      }
      return;
    }
    for (const auto& e : *page) {
      Step step = consumer_.deliver(e);
      if (step == Step::kWait) {
        std::weak_ptr<EventPump> weak = weak_from_this();
        consumer_.on_writable([weak] {
          if (auto p = weak.lock()) p->Wake();
        });
        return;
      }
      if (step == Step::kStop) {
        std::lock_guard<std::mutex> lk(mu_);
        done_ = true;
        return;
      }
      next_ = run_id_.empty() ? e.cursor : e.seq;
    }
  }
}

namespace {

void AddEnvelope(const store::EventRecord& e, nlohmann::json& j) {
  j["type"] = store::EventTypeName(e.type);
  j["run_id"] = e.run_id;
  j["seq"] = e.seq;
  j["ts"] = e.ts_ms;
  j["cursor"] = e.cursor;
}

}  // namespace

nlohmann::json EventToJson(const store::EventRecord& e, const std::string& data_dir) {
  nlohmann::json j = e.data;
  if (!j.is_object()) j = {{"data", e.data}};
  if (e.type == store::EventType::kStepLog && !j.contains("data") && !j.contains("data_b64")) {
    std::string bytes = supervisor::LogEventBytes(e, data_dir);
    if (supervisor::IsValidUtf8(bytes)) {
      j["data"] = std::move(bytes);
    } else {
      j["data_b64"] = supervisor::Base64Encode(bytes);
    }
  }
  AddEnvelope(e, j);
  return j;
}

std::string EventToJsonText(const store::EventRecord& e, const std::string& data_dir) {
  if (e.type != store::EventType::kStepLog || !e.data.is_object() || e.data.contains("data") ||
      e.data.contains("data_b64")) {
    return DumpJson(EventToJson(e, data_dir));
  }
  std::string bytes = supervisor::LogEventBytes(e, data_dir);
  nlohmann::json j = e.data;
  AddEnvelope(e, j);
  if (!supervisor::IsValidUtf8(bytes)) {
    j["data_b64"] = supervisor::Base64Encode(bytes);
    return DumpJson(j);
  }
  // The bytes are escaped straight into the message, sized once, after the other fields (never
  // an empty object: the envelope is there). nlohmann's dump would check their UTF-8 again, a
  // byte at a time, and grow its string as it goes.
  std::string head = DumpJson(j);
  std::string out;
  out.reserve(head.size() + bytes.size() + bytes.size() / 16 + 16);
  out.append(head, 0, head.size() - 1);
  out.append(",\"data\":\"");
  supervisor::AppendJsonEscaped(bytes, &out);
  out.append("\"}");
  return out;
}

std::string BinaryMessageHead(const store::EventRecord& e) {
  nlohmann::json header = nlohmann::json::object();
  if (e.data.is_object()) {
    for (const auto& [key, value] : e.data.items()) {
      if (key != "data" && key != "data_b64") header[key] = value;
    }
  }
  AddEnvelope(e, header);
  std::string head = DumpJson(header);  // one line: a dump has no raw newline
  head.push_back('\n');
  return head;
}

std::string EventToBinaryMessage(const store::EventRecord& e, const std::string& data_dir) {
  std::string head = BinaryMessageHead(e);
  // A kept buffer's pages are mapped already, and its stale bytes are overwritten in place
  // (see buffer_pool.h).
  std::string out = BufferPool::Take();
  if (out.size() < head.size()) out.resize(head.size());
  out.replace(0, head.size(), head);
  supervisor::PutLogEventBytes(e, data_dir, head.size(), &out);
  return out;
}

}  // namespace sbx::api
