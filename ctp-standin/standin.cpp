// qilin's CTP stand-in: a market-data library with the ABI of the vendor's thostmduserapi_se.so
// 6.7.11 (the same exported symbols, the same CThostFtdcMdApi vtable), loaded by the unchanged
// client in place of the vendor's library. It speaks no CTP wire protocol: the "front" it connects
// to is a scenario driver that plays the front's part over the small framed protocol described in
// ctp-standin/README.md (login answers, subscription answers, raw depth structs, heartbeat warnings,
// disconnects with a reason, stalls of the callback thread).
//
// Compiled against the 6.7.11 headers that the ctp2rs crate ships (never committed here) by
// qilin_ctp_standin::build(); see ctp-standin/README.md.
//
// Behaviour copied from the vendor's library (each compared with it in tests/tests/ctp_library.rs):
// CreateFtdcMdApi creates DialogRsp.con, QueryRsp.con and TradingDay.con in the flow path (and
// fails if it cannot); Init starts the library's own threads and every callback arrives on them;
// a lost connection is reported with OnFrontDisconnected(reason) and retried 1 s later, forever;
// after a reconnect the session is logged out and its subscriptions are gone; Release joins the
// library's threads; GetTradingDay is 19800100 until a login reports another day.

#include "ThostFtdcMdApi.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <poll.h>
#include <cerrno>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

static_assert(sizeof(CThostFtdcDepthMarketDataField) == 584, "the 6.7.x depth struct is 584 bytes");

namespace {

const char* const kVersion = "v6.7.11_qilin-standin";
const char* const kNoTradingDay = "19800100";
// How long after a lost connection (or a failed connect) the library tries again; measured on the
// vendor's 6.7.11 library: 1.0 s.
const auto kReconnect = std::chrono::milliseconds(1000);

// Frame types, stand-in → driver.
enum : uint8_t {
    kHello = 'H',      // pid u32, flow path
    kLogin = 'L',      // request id i32, BrokerID \0 UserID \0 Password \0
    kSubscribe = 'S',  // ids, each NUL-terminated
    kUnsubscribe = 'U',
    kLogout = 'O',     // request id i32
    kPong = 'P',       // token u64, delivered u64, undelivered u64
};
// Frame types, driver → stand-in.
enum : uint8_t {
    kLoginRsp = 'l',      // error id i32, TradingDay[9], ErrorMsg bytes (GB18030)
    kSubRsp = 's',        // error id i32, is_last u8, InstrumentID \0, ErrorMsg bytes
    kUnsubRsp = 'u',      // same
    kDepth = 'd',         // N × 584 bytes of CThostFtdcDepthMarketDataField
    kHeartbeat = 'h',     // seconds i32
    kDrop = 'x',          // reason i32: close the connection, report OnFrontDisconnected(reason)
    kStall = 'z',         // ms u32: the callback thread sleeps that long
    kRspError = 'e',      // error id i32, ErrorMsg bytes
    kPing = 'p',          // token u64: answered with kPong once everything before it is handled
    kWelcome = 'W',       // the front accepts the connection: OnFrontConnected
};

struct Frame {
    uint8_t type;
    std::string body;
    uint64_t conn;  // which connection it came on (a stale connection's frames are ignored)
};

void put_u32(std::string& s, uint32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); }
void put_u64(std::string& s, uint64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); }
template <typename T> T get(const std::string& s, size_t at) {
    T v{};
    if (s.size() >= at + sizeof(T)) memcpy(&v, s.data() + at, sizeof(T));
    return v;
}

template <size_t N> void set_text(char (&dst)[N], const char* src, size_t len) {
    size_t n = len < N - 1 ? len : N - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}
template <size_t N> void set_text(char (&dst)[N], const std::string& src) { set_text(dst, src.data(), src.size()); }

// "tcp://host:port" → a connected socket, or -1.
int dial(const std::string& front) {
    std::string rest = front;
    auto scheme = rest.find("://");
    if (scheme != std::string::npos) rest = rest.substr(scheme + 3);
    auto colon = rest.rfind(':');
    if (colon == std::string::npos) return -1;
    std::string host = rest.substr(0, colon), port = rest.substr(colon + 1);
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0) return -1;
    int fd = -1;
    for (addrinfo* a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        // Non-blocking connect with a bounded wait, so that Release never waits on an unreachable
        // front for longer than that.
        int flags = fcntl(fd, F_GETFL, 0);
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            pollfd p{fd, POLLOUT, 0};
            int err = 0;
            socklen_t len = sizeof err;
            if (poll(&p, 1, 1000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) rc = 0;
        }
        if (rc == 0) {
            fcntl(fd, F_SETFL, flags);
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

bool read_full(int fd, char* p, size_t n) {
    while (n > 0) {
        ssize_t r = ::read(fd, p, n);
        if (r <= 0) return false;
        p += r;
        n -= size_t(r);
    }
    return true;
}

class StandinMdApi final : public CThostFtdcMdApi {
public:
    explicit StandinMdApi(std::string flow) : flow_(std::move(flow)) { set_text(trading_day_, kNoTradingDay, 8); }

    void Release() override {
        {
            std::lock_guard<std::mutex> g(mu_);
            stopping_ = true;
            if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
        }
        cv_.notify_all();
        bool on_own_thread = std::this_thread::get_id() == net_id_ || std::this_thread::get_id() == cb_id_;
        if (!on_own_thread) {
            if (net_.joinable()) net_.join();
            if (cb_.joinable()) cb_.join();
            delete this;
        } else {
            // Released from one of its own callbacks: it cannot join itself; the threads finish
            // once the callback returns and the object is left behind (as with the vendor's
            // library, whose documentation forbids this).
            if (net_.joinable()) net_.detach();
            if (cb_.joinable()) cb_.detach();
        }
    }

    void Init() override {
        std::lock_guard<std::mutex> g(mu_);
        if (started_) return;
        started_ = true;
        cb_ = std::thread([this] { callback_loop(); });
        net_ = std::thread([this] { network_loop(); });
        net_id_ = net_.get_id();
        cb_id_ = cb_.get_id();
    }

    int Join() override {
        if (net_.joinable()) net_.join();
        if (cb_.joinable()) cb_.join();
        return 0;
    }

    const char* GetTradingDay() override { return trading_day_; }

    void RegisterFront(char* address) override {
        if (!address) return;
        std::lock_guard<std::mutex> g(mu_);
        fronts_.emplace_back(address);
    }
    void RegisterNameServer(char* address) override { RegisterFront(address); }
    void RegisterFensUserInfo(CThostFtdcFensUserInfoField*) override {}
    void RegisterSpi(CThostFtdcMdSpi* spi) override { spi_.store(spi); }

    int SubscribeMarketData(char* ids[], int count) override { return send_ids(kSubscribe, ids, count); }
    int UnSubscribeMarketData(char* ids[], int count) override { return send_ids(kUnsubscribe, ids, count); }
    int SubscribeForQuoteRsp(char*[], int) override { return 0; }
    int UnSubscribeForQuoteRsp(char*[], int) override { return 0; }

    int ReqUserLogin(CThostFtdcReqUserLoginField* req, int request_id) override {
        if (!req) return -1;
        std::string body;
        put_u32(body, uint32_t(request_id));
        for (const char* field : {req->BrokerID, req->UserID, req->Password}) {
            body.append(field, strnlen(field, 41));
            body.push_back('\0');
        }
        login_request_.store(request_id);
        int rc = send(kLogin, body);
        // The password leaves this process only on the driver's socket.
        volatile char* p = const_cast<volatile char*>(&body[0]);
        for (size_t i = 0; i < body.size(); i++) p[i] = 0;
        return rc;
    }

    int ReqUserLogout(CThostFtdcUserLogoutField*, int request_id) override {
        std::string body;
        put_u32(body, uint32_t(request_id));
        return send(kLogout, body);
    }

    int ReqQryMulticastInstrument(CThostFtdcQryMulticastInstrumentField*, int) override { return 0; }

private:
    ~StandinMdApi() {
        if (fd_ >= 0) close(fd_);
    }

    int send_ids(uint8_t type, char* ids[], int count) {
        if (!ids || count <= 0) return 0;
        std::string body;
        for (int i = 0; i < count; i++) {
            if (!ids[i]) continue;
            body.append(ids[i], strnlen(ids[i], 81));
            body.push_back('\0');
        }
        return send(type, body);
    }

    // A request to the front: -1 (the vendor's "network connection failed") while not connected.
    int send(uint8_t type, const std::string& body) {
        std::string frame;
        put_u32(frame, uint32_t(body.size() + 1));
        frame.push_back(char(type));
        frame += body;
        std::lock_guard<std::mutex> g(write_mu_);
        int fd;
        {
            std::lock_guard<std::mutex> g2(mu_);
            fd = fd_;
        }
        if (fd < 0) return -1;
        const char* p = frame.data();
        size_t n = frame.size();
        while (n > 0) {
            ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
            if (w <= 0) return -1;
            p += w;
            n -= size_t(w);
        }
        volatile char* z = const_cast<volatile char*>(&frame[0]);
        for (size_t i = 0; i < frame.size(); i++) z[i] = 0;
        return 0;
    }

    // Waits `d` unless the API is being released; true if it is.
    bool wait_stopping(std::chrono::milliseconds d) {
        std::unique_lock<std::mutex> g(mu_);
        return cv_.wait_for(g, d, [this] { return stopping_.load(); });
    }

    // The network thread: connects to the fronts in turn, reads frames, queues them for the
    // callback thread; a lost connection is queued as a disconnect.
    void network_loop() {
        size_t next_front = 0;
        while (true) {
            std::string front;
            {
                std::lock_guard<std::mutex> g(mu_);
                if (stopping_) return;
                if (!fronts_.empty()) front = fronts_[next_front++ % fronts_.size()];
            }
            int fd = front.empty() ? -1 : dial(front);
            if (fd < 0) {
                if (wait_stopping(kReconnect)) return;
                continue;
            }
            uint64_t conn;
            {
                std::lock_guard<std::mutex> g(mu_);
                if (stopping_) {
                    close(fd);
                    return;
                }
                fd_ = fd;
                conn = ++conn_;
            }
            std::string hello;
            put_u32(hello, uint32_t(getpid()));
            hello += flow_;
            send(kHello, hello);
            int32_t reason = 0x1001;        // network read failed, unless the driver says otherwise
            while (true) {
                char head[5];
                if (!read_full(fd, head, 5)) break;
                uint32_t len;
                memcpy(&len, head, 4);
                if (len == 0 || len > (64u << 20)) break;
                Frame f{uint8_t(head[4]), std::string(len - 1, '\0'), conn};
                if (len > 1 && !read_full(fd, &f.body[0], len - 1)) break;
                if (f.type == kDrop) {
                    reason = get<int32_t>(f.body, 0);
                    break;
                }
                // Like the vendor's library, OnFrontConnected only once the front has answered (a
                // bare listener never makes it); a lost connection is reported either way.
                if (f.type == kWelcome) f.type = 'C';
                enqueue(std::move(f));
            }
            {
                std::lock_guard<std::mutex> g(write_mu_);
                std::lock_guard<std::mutex> g2(mu_);
                fd_ = -1;
            }
            close(fd);
            std::string why;
            put_u32(why, uint32_t(reason));
            enqueue(Frame{'D', why, conn});  // OnFrontDisconnected
            if (wait_stopping(kReconnect)) return;
        }
    }

    void enqueue(Frame f) {
        {
            std::lock_guard<std::mutex> g(mu_);
            queue_.push_back(std::move(f));
        }
        cv_.notify_all();
    }

    void callback_loop() {
        std::deque<Frame> batch;
        while (true) {
            {
                std::unique_lock<std::mutex> g(mu_);
                cv_.wait(g, [this] { return stopping_.load() || !queue_.empty(); });
                if (stopping_) return;
                batch.swap(queue_);
            }
            for (Frame& f : batch) {
                if (stopping_) return;
                handle(f);
            }
            batch.clear();
        }
    }

    void handle(const Frame& f) {
        CThostFtdcMdSpi* spi = spi_.load();
        switch (f.type) {
        case 'C':
            logged_in_ = false;
            subscribed_.clear();
            if (spi) spi->OnFrontConnected();
            break;
        case 'D':
            logged_in_ = false;
            subscribed_.clear();
            if (spi) spi->OnFrontDisconnected(get<int32_t>(f.body, 0));
            break;
        case kLoginRsp: {
            CThostFtdcRspUserLoginField rsp{};
            CThostFtdcRspInfoField info{};
            info.ErrorID = get<int32_t>(f.body, 0);
            std::string day = f.body.size() >= 13 ? std::string(f.body.data() + 4, strnlen(f.body.data() + 4, 9)) : "";
            if (f.body.size() > 13) set_text(info.ErrorMsg, f.body.data() + 13, f.body.size() - 13);
            set_text(rsp.TradingDay, day);
            set_text(rsp.SystemName, "qilin-standin", 13);
            if (info.ErrorID == 0) {
                logged_in_ = true;
                set_text(trading_day_, day);
            }
            if (spi) spi->OnRspUserLogin(&rsp, &info, login_request_.load(), true);
            break;
        }
        case kSubRsp:
        case kUnsubRsp: {
            CThostFtdcSpecificInstrumentField inst{};
            CThostFtdcRspInfoField info{};
            info.ErrorID = get<int32_t>(f.body, 0);
            bool last = f.body.size() > 4 && f.body[4] != 0;
            std::string id = f.body.size() > 5 ? std::string(f.body.c_str() + 5) : "";
            size_t msg_at = 5 + id.size() + 1;
            if (f.body.size() > msg_at) set_text(info.ErrorMsg, f.body.data() + msg_at, f.body.size() - msg_at);
            set_text(inst.InstrumentID, id);
            if (f.type == kSubRsp) {
                if (info.ErrorID == 0 && logged_in_) subscribed_.insert(id);
                if (spi) spi->OnRspSubMarketData(&inst, &info, 0, last);
            } else {
                subscribed_.erase(id);
                if (spi) spi->OnRspUnSubMarketData(&inst, &info, 0, last);
            }
            break;
        }
        case kDepth: {
            size_t n = f.body.size() / sizeof(CThostFtdcDepthMarketDataField);
            for (size_t i = 0; i < n; i++) {
                CThostFtdcDepthMarketDataField tick;
                memcpy(&tick, f.body.data() + i * sizeof tick, sizeof tick);
                std::string id(tick.InstrumentID, strnlen(tick.InstrumentID, sizeof tick.InstrumentID));
                // A front sends only what this connection subscribed after its login.
                if (!logged_in_ || !subscribed_.count(id)) {
                    undelivered_++;
                    continue;
                }
                delivered_++;
                if (spi) spi->OnRtnDepthMarketData(&tick);
            }
            break;
        }
        case kHeartbeat:
            if (spi) spi->OnHeartBeatWarning(get<int32_t>(f.body, 0));
            break;
        case kStall:
            std::this_thread::sleep_for(std::chrono::milliseconds(get<uint32_t>(f.body, 0)));
            break;
        case kRspError: {
            CThostFtdcRspInfoField info{};
            info.ErrorID = get<int32_t>(f.body, 0);
            if (f.body.size() > 4) set_text(info.ErrorMsg, f.body.data() + 4, f.body.size() - 4);
            if (spi) spi->OnRspError(&info, 0, true);
            break;
        }
        case kPing: {
            std::string pong;
            put_u64(pong, get<uint64_t>(f.body, 0));
            put_u64(pong, delivered_);
            put_u64(pong, undelivered_);
            send(kPong, pong);
            break;
        }
        default:
            fprintf(stderr, "qilin ctp stand-in: unknown frame type %d from the driver, ignored\n", int(f.type));
        }
    }

    friend CThostFtdcMdApi;
    const std::string flow_;
    std::mutex mu_;        // fd_, conn_, fronts_, queue_, stopping_, started_
    std::mutex write_mu_;  // one frame at a time on the socket
    std::condition_variable cv_;
    std::vector<std::string> fronts_;
    std::deque<Frame> queue_;
    std::atomic<CThostFtdcMdSpi*> spi_{nullptr};
    std::thread net_, cb_;
    std::thread::id net_id_, cb_id_;
    int fd_ = -1;
    uint64_t conn_ = 0;
    std::atomic<bool> stopping_{false};
    std::atomic<int> login_request_{0};
    bool started_ = false;
    // The callback thread's own state.
    bool logged_in_ = false;
    std::unordered_set<std::string> subscribed_;
    uint64_t delivered_ = 0, undelivered_ = 0;
    char trading_day_[9];
};

}  // namespace

CThostFtdcMdApi* CThostFtdcMdApi::CreateFtdcMdApi(const char* flow_path, const bool, const bool, bool) {
    std::string flow = flow_path ? flow_path : "";
    // As the vendor's library: three flow files in the flow path, and no API without them (the
    // vendor's library aborts with "can not open CFlow file"; the stand-in says so and returns NULL).
    for (const char* name : {"DialogRsp.con", "QueryRsp.con", "TradingDay.con"}) {
        std::string path = flow + name;
        FILE* f = fopen(path.c_str(), "ab");
        if (!f) {
            fprintf(stderr, "qilin ctp stand-in: can not open CFlow file %s\n", path.c_str());
            return nullptr;
        }
        if (ftell(f) == 0) fwrite("\0\0\0\0\0\0", 1, 6, f);
        fclose(f);
    }
    return new StandinMdApi(flow);
}

const char* CThostFtdcMdApi::GetApiVersion() { return kVersion; }
