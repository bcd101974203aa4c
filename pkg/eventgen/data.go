package eventgen

// The word lists below are read-only tables. They are small on purpose: a
// bounded vocabulary makes the demographics and revenue reports show groups
// with more than one member, as real traffic does.

// place is a country with a few of its cities, so a facebook user's location
// is a plausible pair.
type place struct {
	country string
	cities  []string
}

var places = [...]place{
	{"Argentina", []string{"Buenos Aires", "Córdoba", "Rosario"}},
	{"Australia", []string{"Sydney", "Melbourne", "Brisbane"}},
	{"Austria", []string{"Vienna", "Graz", "Linz"}},
	{"Belgium", []string{"Brussels", "Antwerp", "Ghent"}},
	{"Brazil", []string{"São Paulo", "Rio de Janeiro", "Brasília"}},
	{"Canada", []string{"Toronto", "Montreal", "Vancouver"}},
	{"Chile", []string{"Santiago", "Valparaíso", "Concepción"}},
	{"China", []string{"Shanghai", "Beijing", "Shenzhen"}},
	{"Colombia", []string{"Bogotá", "Medellín", "Cali"}},
	{"Czech Republic", []string{"Prague", "Brno", "Ostrava"}},
	{"Denmark", []string{"Copenhagen", "Aarhus", "Odense"}},
	{"Egypt", []string{"Cairo", "Alexandria", "Giza"}},
	{"Finland", []string{"Helsinki", "Espoo", "Tampere"}},
	{"France", []string{"Paris", "Lyon", "Marseille"}},
	{"Germany", []string{"Berlin", "Hamburg", "Munich"}},
	{"Greece", []string{"Athens", "Thessaloniki", "Patras"}},
	{"India", []string{"Mumbai", "Delhi", "Bengaluru"}},
	{"Indonesia", []string{"Jakarta", "Surabaya", "Bandung"}},
	{"Ireland", []string{"Dublin", "Cork", "Galway"}},
	{"Italy", []string{"Rome", "Milan", "Naples"}},
	{"Japan", []string{"Tokyo", "Osaka", "Yokohama"}},
	{"Kenya", []string{"Nairobi", "Mombasa", "Kisumu"}},
	{"Mexico", []string{"Mexico City", "Guadalajara", "Monterrey"}},
	{"Mongolia", []string{"Ulaanbaatar", "Erdenet", "Darkhan"}},
	{"Morocco", []string{"Casablanca", "Rabat", "Marrakesh"}},
	{"Netherlands", []string{"Amsterdam", "Rotterdam", "Utrecht"}},
	{"New Zealand", []string{"Auckland", "Wellington", "Christchurch"}},
	{"Nigeria", []string{"Lagos", "Abuja", "Kano"}},
	{"Norway", []string{"Oslo", "Bergen", "Trondheim"}},
	{"Philippines", []string{"Manila", "Quezon City", "Cebu City"}},
	{"Poland", []string{"Warsaw", "Kraków", "Wrocław"}},
	{"Portugal", []string{"Lisbon", "Porto", "Braga"}},
	{"Romania", []string{"Bucharest", "Cluj-Napoca", "Iași"}},
	{"South Africa", []string{"Johannesburg", "Cape Town", "Durban"}},
	{"South Korea", []string{"Seoul", "Busan", "Incheon"}},
	{"Spain", []string{"Madrid", "Barcelona", "Valencia"}},
	{"Sweden", []string{"Stockholm", "Gothenburg", "Malmö"}},
	{"Turkey", []string{"Istanbul", "Ankara", "Izmir"}},
	{"Ukraine", []string{"Kyiv", "Lviv", "Odesa"}},
	{"United Kingdom", []string{"London", "Manchester", "Edinburgh"}},
	{"United States", []string{"New York", "Los Angeles", "Chicago"}},
	{"Vietnam", []string{"Hanoi", "Ho Chi Minh City", "Da Nang"}},
}

var firstNames = [...]string{
	"Aaron", "Ada", "Alice", "Amara", "Andrii", "Anna", "Ben", "Carlos",
	"Chloe", "Daniel", "Diego", "Eliza", "Emma", "Fatima", "Felix", "Grace",
	"Gregory", "Hana", "Henry", "Isaac", "Ivy", "Jamal", "Julia", "Kai",
	"Laura", "Leo", "Lucia", "Maya", "Mei", "Noah", "Olga", "Omar", "Priya",
	"Rob", "Sara", "Sofia", "Tariq", "Theo", "Yuki", "Zoe",
}

var lastNames = [...]string{
	"Auer", "Bauer", "Chen", "Costa", "Dubois", "Eriksen", "Fischer",
	"García", "Gupta", "Hansen", "Ivanova", "Jensen", "Kim", "Kowalski",
	"Kuznets", "Larsen", "Martin", "Müller", "Nakamura", "Novak", "Okafor",
	"O'Brien", "Petrenko", "Rossi", "Santos", "Schmidt", "Silva", "Smith",
	"Tanaka", "Nguyen", "Walker", "Wang", "Zulauf",
}

// Gender weights follow the share of non-binary answers in public surveys
// rather than a uniform third, so byGender has one small group.
var genders = [...]struct {
	name   string
	weight int
}{
	{"female", 48},
	{"male", 47},
	{"non-binary", 5},
}

var (
	referrers      = [...]string{"newsfeed", "marketplace", "groups"}
	clickPositions = [...]string{"top_left", "bottom_right", "center"}
	fbDevices      = [...]string{"mobile", "desktop"}
	browsers       = [...]string{"Chrome", "Firefox", "Safari"}
	ttkDevices     = [...]string{"Android", "iOS", "Desktop"}
)

var products = [...]string{
	"Wireless Earbuds", "Phone Case", "LED Ring Light", "Yoga Mat",
	"Lip Gloss Set", "Water Bottle", "Sneakers", "Hoodie", "Smart Watch",
	"Face Serum", "Mini Projector", "Desk Lamp", "Backpack", "Sunglasses",
	"Bluetooth Speaker", "Phone Tripod", "Scented Candle", "Coffee Grinder",
	"Hair Straightener", "Board Game",
}
